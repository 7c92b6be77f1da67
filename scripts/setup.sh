#!/usr/bin/env bash
# Create .venv (if missing) and install textdml with the given extras at the versions in constraints.txt
# (the ones the test suite last passed with); install WordNet for the data.
# Usage: bash scripts/setup.sh [extras]   e.g. bash scripts/setup.sh test
#   TEXTDML_VENV=DIR          another virtual environment (default .venv)
#   TEXTDML_CONSTRAINTS=none  the newest releases instead of constraints.txt (scripts/check_newest.sh uses it)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-quickstart}"
venv="${TEXTDML_VENV:-.venv}"
constraints="${TEXTDML_CONSTRAINTS:-constraints.txt}"
if [ "$constraints" != "none" ]; then
  pin=(-c "$constraints")
else
  # The newest release of every package, torch and torchvision kept at the builds installed below.
  pin=(--upgrade --upgrade-strategy eager)
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  python3 -m venv "$venv"
fi
# torch first, pinned so that pip takes the builds this machine kind keeps on local disk (elsewhere
# it resolves to the platform's build as usual): the CPU build for text work, the build that
# matches torchvision when the image towers (open_clip) are needed (the test and vision extras).
# constraints.txt leaves torch out for that reason.
case "$extras" in
  *test*|*vision*)
    if ! "$venv/bin/python" -c "import torchvision" 2>/dev/null; then
      echo "[setup] installing torch + torchvision (image towers)"
      "$venv/bin/pip" install -q "torch==2.14.1" "torchvision==0.29.1"
    fi ;;
  *)
    if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
      echo "[setup] installing torch"
      "$venv/bin/pip" install -q "torch==2.13.0"
    fi ;;
esac
if [ "$constraints" = "none" ]; then
  "$venv/bin/pip" freeze | grep -E '^(torch|torchvision)==' > "$venv/torch-pins.txt"
  pin+=(-c "$venv/torch-pins.txt")
fi
echo "[setup] installing textdml[$extras] (constraints: $constraints)"
"$venv/bin/pip" install -q "${pin[@]}" -e ".[$extras]"

if [ ! -f /usr/share/wordnet/data.noun ] && [ -z "${TEXTDML_WORDNET_DIR:-}" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[setup] installing WordNet 3.0 (Debian wordnet-base)"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends wordnet-base >/dev/null
  else
    echo "[setup] WordNet 3.0 is missing: run 'sudo apt-get install wordnet-base' (or set TEXTDML_WORDNET_DIR)" >&2
    exit 1
  fi
fi
# The report test opens the run report in a real headless browser; without one it skips.
case "$extras" in
  *test*)
    if ! command -v chromium >/dev/null && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
      echo "[setup] installing chromium (report browser test; skipped if this fails)"
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
        || echo "[setup] could not install chromium: the browser test will skip" >&2
    fi ;;
esac
echo "[setup] ready"
