#!/usr/bin/env bash
# The CPU figures in docs/benchmarks.md: speed tables for mini, a tiny SD and an SD1.5-sized UNet, plus the
# default run end to end with each method. Usage: bash benchmarks/run_cpu.sh [threads]
set -euo pipefail
threads=${1:-2}
tmp=$(mktemp -d)
python -c "from pathlib import Path; from preciseinv.testing.tiny import save_tiny_sd; save_tiny_sd(Path('$tmp'))" >/dev/null 2>&1
echo "## mini"; python benchmarks/speed.py --model mini --batch 1 4 16 --threads "$threads" 2>/dev/null
echo; echo "## tiny SD (random weights)"; python benchmarks/speed.py --model "$tmp/tiny-sd-epsilon" --batch 1 4 16 --threads "$threads" 2>/dev/null
echo; echo "## SD1.5-sized UNet, 512 px (random weights)"; python benchmarks/speed.py --model sd15-random --batch 1 --iters 2 --threads "$threads" 2>/dev/null
for method in ddim preciseinv; do
  echo; echo "## python -m preciseinv.fit method=$method (wall clock, process start to exit)"
  TIMEFORMAT="wall: %R s"
  time (OMP_NUM_THREADS=$threads python -m preciseinv.fit method=$method ~logger output_dir="$tmp/run-$method" \
        >/dev/null 2>&1)
  python -c "import json, sys; s = json.load(open(sys.argv[1])); print({k: s[k] for k in ('psnr_mean', 'ssim_mean',
    'seconds_per_image', 'converged_fraction', 'nfe_forward_mean', 'nfe_backward_mean', 'cost_mean')})" \
    "$tmp/run-$method/summary.json"
done
rm -rf "$tmp"
