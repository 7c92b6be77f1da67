#!/usr/bin/env bash
# README command 2: set up, then run the test suite (slow and gpu tests are opt-in: -m slow / -m gpu).
# TEXTDML_VENV and TEXTDML_CONSTRAINTS pass through to scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
HF_HUB_OFFLINE=1 "${TEXTDML_VENV:-.venv}/bin/python" -m pytest "$@"
