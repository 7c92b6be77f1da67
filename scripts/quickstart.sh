#!/usr/bin/env bash
# README command 1: set up, then train -> evaluate -> index into Qdrant -> search, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh quickstart
HF_HUB_OFFLINE=1 .venv/bin/textdml quickstart "$@"
