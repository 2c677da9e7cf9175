#!/usr/bin/env bash
# Every GPU measurement in one call (sized for under ten minutes on one H100): the engine's ms per
# image-iteration for SD1.5 (512 px), SDXL (1024 px) and SD3-medium (1024 px) denoisers with random weights, in
# bf16, over batch sizes, plus the embedded model end to end, each measurement appended to benchmarks/results.jsonl
# (and copied to $OUT when the device tool provides one). On a CPU, try it small:
#   MODELS=mini PRECISION=fp32 ITERS=1 BATCHES_mini="1" bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
results=${RESULTS:-benchmarks/results.jsonl}
models=${MODELS:-"sd15-random sdxl-random sd3-random mini"}
precision=${PRECISION:-bf16}
iters=${ITERS:-10}
"${PYTHON:-python}" - <<'PY'
import torch
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "| torch", torch.__version__)
PY
for model in $models; do
  var="BATCHES_${model//-/_}"
  case $model in
    sd15-random) default="1 8 32 64" ;;
    sdxl-random|sd3-random) default="1 4 8 16" ;;
    *) default="1 16 64" ;;
  esac
  batches=${!var:-$default}
  echo; echo "## $model ($precision, batches $batches)"
  timeout "${MODEL_TIMEOUT:-240}" "${PYTHON:-python}" benchmarks/speed.py --model "$model" --batch $batches --iters "$iters" \
    --precision "$precision" --out "$results" || echo "($model: failed or timed out; later models still run)"
done
if [ -n "${OUT:-}" ] && [ -d "${OUT}" ] && [ "$(realpath "$results")" != "$(realpath "$OUT")/$(basename "$results")" ]; then
  cp "$results" "$OUT/"
fi
echo; echo "appended to $results"
