#!/usr/bin/env bash
# Install descry into the active Python environment: PyTorch first, then descry with every
# dependency pinned by constraints.txt.
#
#   bash scripts/install.sh [--cpu | --gpu] [EXTRAS]
#
# EXTRAS is a comma-separated list of descry's extras (default: hf), e.g. hf,server,xmp or all.
# Without --cpu/--gpu the build of PyTorch follows the machine: the CUDA build from PyPI where
# `nvidia-smi` sees a GPU, otherwise a CPU build from PyPI on macOS or from PyTorch's own CPU
# wheel index on Linux (never CUDA wheels). A torch of the pinned version already installed is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
target=auto
extras=hf
for arg in "$@"; do
  case "$arg" in
    --cpu) target=cpu ;;
    --gpu) target=gpu ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "install.sh: unknown option $arg (use --cpu, --gpu or a list of extras such as hf,server)" >&2; exit 2 ;;
    *) extras="$arg" ;;
  esac
done

python=${PYTHON:-python}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "install.sh: descry needs Python 3.11 or newer; '$python' is $("$python" --version 2>&1)" >&2
  exit 2
fi
if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ]; then
  echo "install.sh: no virtual environment is active; installing into $("$python" -c 'import sys; print(sys.prefix)')" >&2
fi

torch_version=$(sed -n 's/^torch==//p' constraints.txt)
cpu_index=https://download.pytorch.org/whl/cpu
if [ "$target" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then target=gpu; else target=cpu; fi
fi

installed=$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [ "${installed%%+*}" = "$torch_version" ]; then
  echo "torch $installed is installed; keeping it"
elif [ "$target" = gpu ] || [ "$(uname -s)" = Darwin ]; then
  "$python" -m pip install "torch==$torch_version"
else
  # Only torch comes from the CPU index; its own dependencies follow from PyPI with the rest.
  "$python" -m pip install --no-deps --index-url "$cpu_index" "torch==$torch_version"
fi

"$python" -m pip install -c constraints.txt -e ".[$extras]"
"$python" -c 'import torch; build = "CUDA " + torch.version.cuda if torch.version.cuda else "CPU"; print(f"descry installed with torch {torch.__version__} ({build} build)")'
