"""End-to-end throughput of ``python -m preciseinv.fit``: images per second of one process, everything included
(image decoding in the loader, VAE encode, the solver, reconstruction, metrics, writes). Two sizes: the marginal
rate between two runs, so that start-up, model loading and a compile's warm-up cancel out. One size: one run's
steady rate (run.json ``last_run``: every rank's images after its first batch over the time to its last batch's
writes, summed over ranks), half the start-up paid.

    python benchmarks/throughput.py --model mini --images 32 160
    python benchmarks/throughput.py --model sd15 --images 64 320 --set model.path=/weights/sd15 --out benchmarks/results.jsonl
    python benchmarks/throughput.py --model mini --images 32 160 --set writer.background=false   # writes inline
    python benchmarks/throughput.py --model mini --images 160        # one run: its steady rate (run.json last_run)

The images are synthetic (smooth random fields at the model's resolution, written once as PNGs); any
``--set key=value`` is passed to fit as an override. ``--out`` appends one JSON object (``kind: "fit"``) with the
same fields as ``speed.py``'s rows plus the runs' PSNR and converged fraction.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch


def synthetic_images(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` smooth random RGB images (size x size PNGs) in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        low = torch.rand(1, 3, 6, 6, generator=gen)
        image = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
        array = (image[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / f"img_{i:05d}.png")
    return folder


def precision_name(run: dict) -> str:
    """The run's precision as the user named it: fit hands bf16-true / 16-true to Lightning as 32-true with
    ``model.dtype`` set to the half dtype."""
    precision, dtype = str(run["trainer"]["precision"]), run["model"]["dtype"]
    half = {"bfloat16": "bf16-true", "float16": "16-true"}
    return half.get(dtype, precision) if precision in ("32-true", "32") else precision


def fit(model: str, root: Path, output: Path, sets: list[str]) -> tuple[float, dict, dict]:
    """(wall seconds, summary.json, run.json) of one fit run."""
    cmd = [sys.executable, "-m", "preciseinv.fit", f"model={model}", "data=folder", f"data.root={root}",
           f"output_dir={output}", "~logger", *sets]
    start = time.perf_counter()
    # run outside the checkout: `-m` would otherwise import its source tree before an installed copy
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=output.parent)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"fit failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return seconds, json.loads((output / "summary.json").read_text()), json.loads((output / "run.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini", help="a model preset (mini, sd15, sdxl, ...)")
    p.add_argument("--images", type=int, nargs="+", default=[16, 64], metavar="N",
                   help="two sizes: the marginal rate of two runs; one size: one run's steady rate (run.json "
                        "last_run: between its first and last batch), half the start-up paid")
    p.add_argument("--resolution", type=int, default=None, help="image side (default: the preset's, 32 for mini)")
    p.add_argument("--eta", type=float, default=1e-2, help="method.eta (the paper's fast setting: 1e-2)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="a fit override, key=value (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="append one JSON object (benchmarks/results.jsonl)")
    args = p.parse_args()
    if len(args.images) not in (1, 2):
        p.error("--images takes one size (a run's steady rate) or two (the marginal rate of two runs)")
    sizes = sorted(args.images)
    sets = [f"method.eta={args.eta}", *args.sets]
    if args.resolution:
        sets.append(f"data.resolution={args.resolution}")
    size = args.resolution or (32 if args.model == "mini" else 512)
    with tempfile.TemporaryDirectory(prefix="preciseinv-throughput-") as tmp:
        tmp = Path(tmp)
        runs = {}
        for n in sizes:
            root = synthetic_images(tmp / f"images-{n}", n, size)
            runs[n] = fit(args.model, root, tmp / f"out-{n}", sets)
    large = sizes[-1]
    t_large, summary, run = runs[large]
    last = run.get("last_run") or {}
    steady = last.get("steady_images_per_second")
    if len(sizes) == 2:
        small, t_small = sizes[0], runs[sizes[0]][0]
        rate, how = (large - small) / max(1e-9, t_large - t_small), "marginal"
        startup = t_small - small / rate
    else:
        if not steady:
            raise SystemExit("one run of a single batch has no steady rate: give more images or two sizes")
        rate, how, startup = steady, "steady", t_large - large / steady
        if last.get("batches", 0) < 3 * last.get("ranks", 1):
            print(f"throughput: only {last.get('batches')} batches; a steady rate over fewer than 3 a rank is rough: "
                  "give more images", file=sys.stderr)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    batch = (run.get("resolved") or {}).get("batch_size", run["data"]["batch_size"])
    precision = precision_name(run)
    row = {"date": str(date.today()), "device": device, "kind": "fit", "model": args.model,
           "resolution": size, "batch": batch, "precision": precision, "dtype": run["model"]["dtype"],
           "compile": run["model"].get("compile", False), "solver": run["solver"]["_target_"].rsplit(".", 1)[-1].lower(),
           "eta": (run.get("method") or {}).get("eta", args.eta), "num_steps": run["num_steps"], "overrides": args.sets,
           "ms_per_image_iteration": None, "images_per_second": rate, "peak_memory_mb": summary.get("peak_memory_mb"),
           "psnr_mean": summary.get("psnr_mean"), "converged_fraction": summary.get("converged_fraction"),
           "cost_mean": summary.get("cost_mean"), "nfe_forward_mean": summary.get("nfe_forward_mean"),
           "nfe_backward_mean": summary.get("nfe_backward_mean"),
           "rate": how, "steady_images_per_second": steady, "batches": last.get("batches"), "ranks": last.get("ranks"),
           "startup_seconds": startup, "startup": (run.get("resolved") or {}).get("startup")}
    print("| model | device | batch | solver | eta | overrides | runs (images: s) | images/s | start-up s | PSNR | cost/image |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    psnr = f"{row['psnr_mean']:.2f}" if row["psnr_mean"] is not None else "-"
    print(f"| {args.model} | {device} | {batch} | {row['solver']} | {row['eta']:g} | {' '.join(args.sets) or '-'} | "
          f"{', '.join(f'{n}: {runs[n][0]:.1f}' for n in sizes)} | {rate:.2f} ({how}) | {startup:.1f} | {psnr} | "
          f"{format(row['cost_mean'], '.1f') if row['cost_mean'] is not None else '-'} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
