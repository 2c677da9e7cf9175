#!/usr/bin/env bash
# Every GPU measurement and GPU-only test in one call (sized for under ten minutes on one H100/H200):
#   1. the GPU-only tests (tests/accel: CUDA's sync debug mode raises on any host sync in the inner iteration);
#   2. end-to-end throughput of `python -m preciseinv.fit` (benchmarks/throughput.py: data.batch_size=auto probed
#      on the GPU, loader, VAE, solver, writer thread), for the embedded model;
#   3. the engine's ms per image-iteration for SD1.5 (512 px), SDXL (1024 px) and SD3-medium (1024 px) denoisers with
#      random weights, per solver kind (adamw: forward + backward; fixed_point: forward only), eager and compiled
#      (the compiled runs last: their compilation may not finish in the time left);
# each measurement appended to benchmarks/results.jsonl (and copied to $OUT when the device tool provides one).
# RUNS lists "model|batches|extra speed.py flags" entries, THROUGHPUT "model|small large|fit overrides" entries.
# On a CPU, try it small:
#   RUNS="mini|1|" THROUGHPUT="" PRECISION=fp32 ITERS=1 GPU_TESTS=0 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
results=${RESULTS:-benchmarks/results.jsonl}
precision=${PRECISION:-bf16}
iters=${ITERS:-5}
default_runs="sd15-random|1 64|--solver adamw fixed_point
sdxl-random|16|--solver adamw fixed_point
sd3-random|16|--solver adamw fixed_point
mini|1 64|--solver adamw fixed_point
mini|1 64|--solver adamw fixed_point --compile reduce-overhead
sd15-random|64|--solver fixed_point adamw --compile true"
default_throughput="mini|64 576|writer.background=true
mini|64 576|writer.background=false"
runs=${RUNS-$default_runs}
throughput=${THROUGHPUT-$default_throughput}
# On the device machine the image has torch, lightning and transformers but not diffusers or hydra: wheels carried
# in .whl/ (ignored by git; see docs/benchmarks.md) and this checkout are installed into a private folder first.
if ! "$py" -c "import diffusers, hydra" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  site=${SITE:-/tmp/preciseinv-site}
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$site" .
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" - <<'PY'
import torch
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "| torch", torch.__version__)
PY
if [ "${GPU_TESTS:-1}" = 1 ]; then
  echo; echo "## GPU-only tests"
  timeout "${TEST_TIMEOUT:-150}" "$py" -m pytest -q -p no:cacheprovider tests/accel -k cuda -rs || echo "(GPU-only tests failed)"
fi
while IFS='|' read -r model sizes sets; do
  [ -z "$model" ] && continue
  echo; echo "## fit throughput: $model ($sizes images, $sets)"
  overrides=()
  for kv in $sets; do overrides+=(--set "$kv"); done
  # shellcheck disable=SC2086
  timeout "${RUN_TIMEOUT:-200}" "$py" benchmarks/throughput.py --model "$model" --images $sizes --out "$results" \
    "${overrides[@]}" || echo "(throughput $model $sets: failed or timed out; later runs still run)"
done <<< "$throughput"
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
