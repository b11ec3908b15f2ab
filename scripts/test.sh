#!/usr/bin/env bash
# Install descry with every test dependency, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# torch first, pinned, so nothing pulls CUDA wheels on a CPU machine (never torchvision).
python -m pip install -q -c constraints.txt torch==2.13.0
python -m pip install -q -c constraints.txt -e ".[dev]"

# System tools the tests use: exiftool reads XMP back as photo tools do; chromium runs the web page.
need=()
command -v exiftool >/dev/null || need+=(libimage-exiftool-perl)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

python -m pytest -q "$@"
