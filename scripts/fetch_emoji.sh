#!/usr/bin/env bash
# Fetch the emoji image-text data from the npm registry into a cache (idempotent):
#   emoji-datasource-google@16.0.0 (images Apache-2.0, data MIT) and emojibase-data@17.0.0 (MIT).
# Usage: bash scripts/fetch_emoji.sh [DIR]   (default: $TEXTDML_EMOJI_DIR or ~/.cache/textdml/emoji)
set -euo pipefail
dir="${1:-${TEXTDML_EMOJI_DIR:-$HOME/.cache/textdml/emoji}}"
if ! command -v npm >/dev/null; then
  echo "npm is needed to fetch the emoji data: install Node.js (e.g. apt-get install -y npm)" >&2
  exit 1
fi
mkdir -p "$dir"
cd "$dir"
for spec in emoji-datasource-google@16.0.0 emojibase-data@17.0.0; do
  name="${spec%@*}"
  if [ -f "$name/package/package.json" ]; then
    echo "[emoji] $name already in $dir"
    continue
  fi
  npm pack --silent "$spec" >/dev/null
  mkdir -p "$name"
  tar xzf "$name-${spec#*@}.tgz" -C "$name"
  echo "[emoji] $name extracted into $dir/$name"
done
