import sys

from textdml.cli import main

sys.exit(main())
