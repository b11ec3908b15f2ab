#!/usr/bin/env bash
# Refresh constraints.txt, the pins of every package descry and its tests install.
#
#   bash scripts/lock.sh
#
# Resolves descry[dev] afresh in a new virtual environment (the newest releases that
# pyproject.toml allows, torch kept at the version pinned in constraints.txt) and writes what
# was installed to constraints.txt. Then check the result the way CI does and commit it only
# when that passes:
#
#   bash .ci/run && git diff constraints.txt
#
# A release that breaks the suite is held back in pyproject.toml with a comment saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

torch_version=$(sed -n 's/^torch==//p' constraints.txt)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
echo "torch==$torch_version" > "$work/torch.txt"
PIP_QUIET=1 bash scripts/install.sh --cpu dev >/dev/null
# install.sh installed descry under the old pins; now let everything else move to the newest allowed
python -m pip install -q --upgrade --upgrade-strategy eager -c "$work/torch.txt" -e ".[dev]"
{
  echo "# Every package descry and its tests install, pinned. Made by scripts/lock.sh on $(date -u +%F)"
  echo "# with Python $(python -c 'import platform; print(platform.python_version())'); refresh with that script, never by hand."
  python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' | LC_ALL=C sort -f
} > constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pins; now run: bash .ci/run && git diff constraints.txt"
