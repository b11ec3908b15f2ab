#!/usr/bin/env bash
# Install descry with every test dependency (pinned by constraints.txt), then run the whole suite.
# Uses the active virtual environment, or creates and uses .venv; CI runs it in a fresh one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi

PIP_QUIET=1 bash scripts/install.sh dev

# System tools the tests use: exiftool reads XMP back as photo tools do; chromium runs the web page.
need=()
command -v exiftool >/dev/null || need+=(libimage-exiftool-perl)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

python -m pytest -q "$@"
