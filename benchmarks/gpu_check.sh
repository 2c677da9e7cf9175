#!/usr/bin/env bash
# Every GPU measurement and GPU-only test in one call (sized for under ten minutes on one H100/H200):
#   1. the GPU-only tests (tests/accel: CUDA's sync debug mode raises on any host sync in the inner iteration);
#   2. the engine's ms per image-iteration for SD1.5 (512 px), SDXL (1024 px) and SD3-medium (1024 px) denoisers with
#      random weights, per solver kind (adamw: forward + backward; fixed_point: forward only), eager, channels_last
#      and compiled, and the embedded model end to end;
# each measurement appended to benchmarks/results.jsonl (and copied to $OUT when the device tool provides one).
# RUNS lists "model|batches|extra speed.py flags" entries. On a CPU, try it small:
#   RUNS="mini|1|" PRECISION=fp32 ITERS=1 GPU_TESTS=0 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
results=${RESULTS:-benchmarks/results.jsonl}
precision=${PRECISION:-bf16}
iters=${ITERS:-5}
default_runs="sd15-random|1 64|--solver adamw fixed_point
sd15-random|64|--solver adamw fixed_point --channels-last
sd15-random|64|--solver adamw fixed_point --channels-last --compile true
sdxl-random|16|--solver adamw fixed_point
sdxl-random|16|--solver adamw --channels-last
sd3-random|16|--solver adamw fixed_point
mini|1 64|--solver adamw fixed_point"
runs=${RUNS:-$default_runs}
"$py" - <<'PY'
import torch
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "| torch", torch.__version__)
PY
if [ "${GPU_TESTS:-1}" = 1 ]; then
  echo; echo "## GPU-only tests"
  timeout "${TEST_TIMEOUT:-150}" "$py" -m pytest -q -p no:cacheprovider tests/accel -k cuda -rs || echo "(GPU-only tests failed)"
fi
while IFS='|' read -r model batches flags; do
  [ -z "$model" ] && continue
  echo; echo "## $model ($precision, batches $batches, $flags)"
  # shellcheck disable=SC2086
  timeout "${RUN_TIMEOUT:-200}" "$py" benchmarks/speed.py --model "$model" --batch $batches --iters "$iters" \
    --precision "$precision" --out "$results" $flags || echo "($model $flags: failed or timed out; later runs still run)"
done <<< "$runs"
if [ -n "${OUT:-}" ] && [ -d "${OUT}" ] && [ "$(realpath "$results")" != "$(realpath "$OUT")/$(basename "$results")" ]; then
  cp "$results" "$OUT/"
fi
echo; echo "appended to $results"
