#!/usr/bin/env bash
# One call on a lent GPU machine, from the repository root, with .whl/ carried (benchmarks/gpu_wheels.sh):
#   bash benchmarks/gpu_run.sh            # results under $OUT (the device tool) or benchmarks/results
# Profiles one batch of the Qwen2.5-VL-7B shape (fused vs stock vision tower, static KV cache), then
# runs `descry bench --profile gpu` for it and writes the JSON and a RESULTS.md section.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 PATH="/tmp/site/bin:$PATH"
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout "${PROFILE_SECONDS:-240}" python3 benchmarks/profile_generate.py --batch 256 --stock-vision --static-cache \
  --out "$out/profile-qwen-$(date -u +%F).json" 2>&1 | grep -v -E "Loading weights|Writing model"
cp benchmarks/RESULTS.md "$out/RESULTS.md"
timeout "${BENCH_SECONDS:-300}" descry bench --profile gpu -m qwen2.5-vl-7b --out "$out" --results-md "$out/RESULTS.md" \
  2>&1 | grep -v -E "Loading weights|Writing model"
