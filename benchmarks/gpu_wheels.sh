#!/usr/bin/env bash
# Download what a bare GPU machine (torch + transformers, Python 3.12) lacks to run descry's GPU
# benchmark, plus a wheel of descry itself, into .whl/ (git-ignored; carry it to the machine).
# The backend registry finds backends through descry's entry points, so descry must be installed
# there as a wheel; PYTHONPATH=src is not enough.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
mkdir -p .whl && rm -f .whl/descry-*.whl
packages=(pydantic pydantic_core pydantic-settings python-dotenv typing-inspection annotated-types
          fastapi starlette uvicorn python-multipart SQLAlchemy greenlet aiosqlite alembic Mako)
pins=()
for name in "${packages[@]}"; do
  pins+=("$name==$(python -m pip show "$name" | sed -n 's/^Version: //p')")
done
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${pins[@]}"
python -m pip wheel -q --no-deps -w .whl .
ls .whl
