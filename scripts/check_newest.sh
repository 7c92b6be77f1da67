#!/usr/bin/env bash
# The test suite against the newest release of every dependency (torch stays at the local build), in
# its own environment (.venv-newest): a release that breaks textdml shows up here as a named failure,
# while scripts/test.sh keeps the versions in constraints.txt and stays green.
# Usage: bash scripts/check_newest.sh [--lock] [pytest args]
#   --lock   when the suite passes, write the versions it passed with to constraints.txt (how the
#            constraints are refreshed; commit the result)
# Exit status: 0 the suite passes on the newest releases; 1 it fails (the failing tests and the
# packages that moved are printed); 2 the newest releases could not be installed.
set -uo pipefail
cd "$(dirname "$0")/.."
lock=0
if [ "${1:-}" = "--lock" ]; then lock=1; shift; fi
export TEXTDML_VENV=.venv-newest TEXTDML_CONSTRAINTS=none
log="$TEXTDML_VENV/pytest.log"

if ! bash scripts/setup.sh "test,quickstart,sts,dev" > /tmp/textdml-newest-setup.log 2>&1; then
  echo "newest-releases check: could not install the newest releases (see /tmp/textdml-newest-setup.log):"
  tail -n 5 /tmp/textdml-newest-setup.log | sed 's/^/  /'
  exit 2
fi
# What moved since constraints.txt: the names to look at first when something breaks.
moved=$("$TEXTDML_VENV/bin/pip" freeze --exclude-editable | grep -vE '^(torch|torchvision)==' \
  | sort | comm -13 <(grep -vE '^(#|$)' constraints.txt | sort) - | tr '\n' ' ')
HF_HUB_OFFLINE=1 "$TEXTDML_VENV/bin/python" -m pytest -q -p no:cacheprovider -rfE "$@" > "$log" 2>&1
status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
  echo "newest-releases check: FAILED with the newest releases of: ${moved:-(nothing moved)}"
  grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/  newest-releases check: /'
  echo "  (the full log: $log; the pinned suite in scripts/test.sh is unaffected)"
  exit 1
fi
echo "newest-releases check: OK on the newest releases (moved since constraints.txt: ${moved:-nothing})"
if [ "$lock" = 1 ]; then
  { echo "# The versions the test suite last passed with; scripts/setup.sh installs them."
    echo "# Refresh: bash scripts/check_newest.sh --lock (runs the suite on the newest releases, writes this file"
    echo "# when it passes). torch and torchvision are pinned in scripts/setup.sh."
    "$TEXTDML_VENV/bin/pip" freeze --exclude-editable | grep -vE '^(torch|torchvision)=='; } > constraints.txt
  echo "newest-releases check: wrote constraints.txt"
fi
