#!/usr/bin/env bash
# Every GPU measurement and GPU-only test in one call (sized for one run of up to ten minutes on one
# H100/H200; the steps run in order of importance, and each one's rows are kept as soon as it ends):
#   - the GPU-only tests (tests/accel: CUDA's sync debug mode raises on any host sync in the inner iteration);
#   - `speed` steps: benchmarks/speed.py, the engine's ms per image-iteration for SD1.5 (512 px), SDXL (1024 px) and
#     SD3-medium (1024 px) denoisers with random weights and the embedded model, per solver kind (adamw: forward +
#     backward; fixed_point: forward only), under autocast or with the weights in bf16 and no autocast, eager or
#     compiled (a batch that does not fit is halved until one does);
#   - `pipe` steps: benchmarks/random_pipeline.py writes a full-size SD1.5-shaped pipeline with random weights to the
#     folder named (for the `fit` steps after it: SD1.5's real cost end to end, with no download);
#   - `fit` steps: benchmarks/throughput.py, images per second of `python -m preciseinv.fit` end to end
#     (data.batch_size=auto probed on the GPU, loader, VAE, solver, writer thread or inline writes): one size, one
#     run's steady rate (its first batch, and so its start-up, left out); two sizes, the marginal rate of two runs.
# Each measurement is appended to benchmarks/results.jsonl and copied to $OUT (when $OUT names a folder)
# after every step. STEPS lists "speed|model|batches|speed.py flags", "pipe|sd15|folder|" and
# "fit|model|images [images]|fit overrides" lines. On a CPU, try it small:
#   STEPS="speed|mini|1|" PRECISION=fp32 ITERS=1 GPU_TESTS=0 bash benchmarks/gpu_check.sh
# Under a time limit of 560 s: DEADLINE=530 bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/log
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
results=${RESULTS:-benchmarks/results.jsonl}
precision=${PRECISION:-bf16}
iters=${ITERS:-5}
# Measured on an H100 (docs/benchmarks.md): eager speed of the three denoisers under autocast, the SD1.5 inductor
# forward, SD1.5 end to end under 16-mixed (2026-11-27); the default hybrid's iteration in each of its phases, bf16
# weights without autocast, cuDNN's benchmark mode at a fixed shape, the compiled gradient step (blocks and whole
# UNet), and bf16-true end to end (2026-12-05). What is still open comes first, each A/B with its baseline in one
# call: the default's gradient phase (lbfgs) beside adamw and the forward; bf16 weights and compile together; cuDNN's
# benchmark mode end to end; the writer thread on SD1.5; SDXL and SD3 without autocast; SD3's compiled blocks; CUDA
# graphs.
default_steps="speed|sd15-random|64|--solver adamw fixed_point hybrid_lbfgs
speed|sd15-random|64|--solver adamw fixed_point --no-autocast
speed|sd15-random|64|--solver adamw fixed_point --no-autocast --compile true --compile-scope regional
pipe|sd15|/tmp/sd15-random|
fit|sd15|160|model.path=/tmp/sd15-random data.batch_size=32 solver=adamw method.eta=1e-30 method.max_iters=25 trainer.precision=bf16-mixed
fit|sd15|160|model.path=/tmp/sd15-random data.batch_size=32 solver=adamw method.eta=1e-30 method.max_iters=25 trainer.precision=bf16-mixed model.cudnn_benchmark=true
fit|sd15|320|model.path=/tmp/sd15-random writer.background=true
fit|sd15|320|model.path=/tmp/sd15-random writer.background=false
speed|sdxl-random|16|--solver adamw fixed_point
speed|sdxl-random|16|--solver adamw fixed_point --no-autocast
speed|sd3-random|16|--solver adamw fixed_point
speed|sd3-random|16|--solver adamw fixed_point --no-autocast
speed|sd3-random|16|--solver adamw --compile true --compile-scope regional
speed|mini|1 64|--solver adamw fixed_point --compile reduce-overhead
speed|mini|1 64|--solver adamw fixed_point --compile reduce-overhead --compile-scope regional
fit|mini|576|model.compile=reduce-overhead"
steps=${STEPS-$default_steps}

save() {  # the rows so far, into $OUT (a folder the caller collects)
  if [ -n "${OUT:-}" ] && [ -d "${OUT}" ] && [ -f "$results" ] \
     && [ "$(realpath "$results")" != "$(realpath "$OUT")/$(basename "$results")" ]; then
    cp "$results" "$OUT/"
  fi
}

# A GPU machine without network that has torch, lightning and transformers but not diffusers or hydra: wheels carried
# in .whl/ (ignored by git; see docs/benchmarks.md) and this checkout are installed into a private folder first.
# (found without importing them: an import of diffusers alone takes seconds, and the check below imports them once)
if ! "$py" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('diffusers', 'hydra'))))" \
     2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  site=${SITE:-/tmp/preciseinv-site}
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "gpu_check: cannot install the wheels in .whl/" >&2; exit 3; }
  # this checkout: its wheel when one was built into .whl/ (`pip wheel --no-deps --no-build-isolation -w .whl .`:
  # no build backend needed there), unless the wheel's files differ from the checkout's; else built there (needs
  # setuptools >= 69 there)
  stale=$("$py" - "$site" <<'PY'
import pathlib, sys
site = pathlib.Path(sys.argv[1]) / "preciseinv"
for src, dst in {"preciseinv": site, "configs": site / "configs", "datamodules": site / "datamodules",
                 "callbacks": site / "callbacks"}.items():
    for f in sorted(pathlib.Path(src).rglob("*")):
        if f.suffix in (".py", ".yaml") and "__pycache__" not in f.parts:
            t = dst / f.relative_to(src)
            if not t.is_file() or t.read_bytes() != f.read_bytes():
                sys.exit(print(f))
PY
)
  if [ -n "$stale" ] || ! ls .whl/preciseinv-*.whl >/dev/null 2>&1; then
    [ -n "$stale" ] && echo "gpu_check: the carried preciseinv wheel is not this checkout ($stale differs): building it"
    "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$site" . \
      || { echo "gpu_check: cannot install this checkout (pip --target); rebuild its wheel here:" \
                "pip wheel --no-deps --no-build-isolation -w .whl ." >&2; exit 3; }
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" - <<'PY' || { echo "gpu_check: diffusers, hydra or preciseinv cannot be imported (carry their wheels in .whl/)" >&2; exit 3; }
import diffusers, hydra, preciseinv.encoders, torch
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "| torch", torch.__version__)
PY
if [ "${GPU_TESTS:-1}" = 1 ]; then
  echo; echo "## GPU-only tests"
  if "$py" -c "import pytest" 2>/dev/null; then
    timeout "${TEST_TIMEOUT:-150}" "$py" -m pytest -q -p no:cacheprovider tests/accel -k cuda -rs \
      || echo "(GPU-only tests failed)"
  else
    echo "(no pytest here: GPU-only tests not run)"
  fi
fi
# DEADLINE (seconds from the script's start, e.g. a little under the run's time limit): no step starts after
# it, and a step is cut at it, so the script ends by itself with its log whole instead of being killed mid-step.
limit() {  # a step's timeout: its own, or what is left before the deadline
  local left=$(( ${DEADLINE:-1000000} - SECONDS ))
  echo $(( left < $1 ? left : $1 ))
}
while IFS='|' read -r kind model sizes flags; do
  [ -z "$kind" ] && continue
  if [ "$(limit 1000000)" -lt 20 ]; then  # under 20 s left: no step would finish
    echo; echo "## deadline (${DEADLINE}s) reached: skipping the remaining steps from $kind $model $flags"; break
  fi
  echo; echo "## $kind: $model ($precision, $sizes, $flags)"
  case "$kind" in
    speed)
      # shellcheck disable=SC2086
      timeout "$(limit "${RUN_TIMEOUT:-200}")" "$py" benchmarks/speed.py --model "$model" --batch $sizes --iters "$iters" \
        --precision "$precision" --out "$results" $flags || echo "($kind $model $flags: failed or timed out)";;
    pipe)  # only SD1.5 has a full-size random pipeline
      if [ "$model" != sd15 ]; then echo "(pipe: no random pipeline for $model; sd15 only)"; continue; fi
      timeout "$(limit "${RUN_TIMEOUT:-200}")" "$py" benchmarks/random_pipeline.py "$sizes" \
        || echo "($kind $model $sizes: failed or timed out)";;
    fit)
      overrides=()
      set -f  # overrides such as timesteps=[1,501] are not file patterns
      for kv in $flags; do overrides+=(--set "$kv"); done
      set +f
      # shellcheck disable=SC2086
      timeout "$(limit "${FIT_TIMEOUT:-400}")" "$py" benchmarks/throughput.py --model "$model" --images $sizes \
        --out "$results" "${overrides[@]}" || echo "($kind $model $flags: failed or timed out)";;
    *) echo "(unknown step kind $kind)";;
  esac
  save
done <<< "$steps"
echo; echo "appended to $results"
