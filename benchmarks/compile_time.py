"""What ``model.compile`` costs before it pays: seconds of compilation of a denoiser's forward + input-gradient and
forward-only graphs as the solver's working set shrinks, per ``model.compile_scope``, from a cold compile cache.

    python benchmarks/compile_time.py --model sd15-random --latent 16 --threads 2
    python benchmarks/compile_time.py --model sd15-random --device cuda --precision bf16 --batch 64 40 --out benchmarks/results.jsonl

Each scope (``eager``, ``full``, ``regional``) runs in a fresh process with an empty inductor cache (a private
``TORCHINDUCTOR_CACHE_DIR``), and times, in order: the first forward + backward call at the first batch size (the
compile), one at the second size (a shrunk working set: a recompilation, if any) and a steady call at each size,
then the same four forward-only (no_grad graphs are compiled apart). The compile in all: what each size's first
call took beyond a steady one at that size. ``--out`` appends one JSON object per scope (``kind`` "compile").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import RANDOM, build, sync  # noqa: E402

from preciseinv.accel.settings import autocast  # noqa: E402

SCOPES = ("eager", "full", "regional")


def measure(args) -> dict:
    """One scope in this process: the seconds of each call (see the module's docstring)."""
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.precision]
    torch.manual_seed(0)
    eager = args.scope == "eager"
    model = build(args.model, device, dtype, compile=not eager, scope="full" if eager else args.scope)
    shape = model.latent_shape if not args.latent else (model.latent_shape[0], args.latent, args.latent)

    def call(batch: int, grad: bool) -> float:
        x = torch.randn(batch, *shape, device=device, generator=torch.Generator(device).manual_seed(batch))
        x.requires_grad_(grad)
        start = time.perf_counter()
        with autocast(device, args.precision), torch.set_grad_enabled(grad):
            out = model.predict(x, 500, model.condition(batch))
        if grad:
            torch.autograd.grad(out.float().pow(2).sum(), x)
        sync(device)
        return time.perf_counter() - start

    first, shrunk = args.batch
    row = {}
    for kind, grad in (("gradient", True), ("forward", False)):
        row.update({f"{kind}_first_s": call(first, grad), f"{kind}_shrunk_s": call(shrunk, grad),
                    f"{kind}_steady_s": call(first, grad), f"{kind}_shrunk_steady_s": call(shrunk, grad)})
    from torch._dynamo.utils import counters

    return {**{k: round(v, 3) for k, v in row.items()}, "graphs": counters["stats"]["unique_graphs"],
            "model": model.name, "resolution": model.resolution}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini", help=f"mini | {' | '.join(RANDOM)} | a diffusers directory")
    p.add_argument("--scopes", nargs="+", default=list(SCOPES), choices=SCOPES)
    p.add_argument("--batch", type=int, nargs=2, default=[3, 2], metavar=("FIRST", "SHRUNK"))
    p.add_argument("--latent", type=int, default=0, help="latent side (0: the model's own; a CPU wants 16)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="append one JSON object per scope (results.jsonl)")
    p.add_argument("--scope", help=argparse.SUPPRESS)  # the child process's one scope
    args = p.parse_args()
    if args.batch[1] >= args.batch[0]:
        p.error(f"--batch FIRST SHRUNK: the shrunk size must be the smaller (got {args.batch[0]} then {args.batch[1]})")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scope:
        print(json.dumps(measure(args)))
        return
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    shown = name if device.type == "cuda" else f"{platform.processor() or 'cpu'} x{torch.get_num_threads()} threads"
    print(f"compile seconds, {args.model} on {shown}, {args.precision}, batch {args.batch[0]} then "
          f"{args.batch[1]}, cold cache\n")
    print("| scope | forward + backward: first call s | at the shrunk batch s | steady s | forward-only: first "
          "call s | at the shrunk batch s | steady s | graphs | compile s in all |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scope in args.scopes:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            proc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--scope", scope], env=env,
                                  capture_output=True, text=True)
        if proc.returncode:
            print(f"| {scope} | failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'} |")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        # the compile: what each size's first call took beyond a steady call at that size
        total = sum(max(0.0, row[f"{kind}_first_s"] - row[f"{kind}_steady_s"])
                    + max(0.0, row[f"{kind}_shrunk_s"] - row[f"{kind}_shrunk_steady_s"])
                    for kind in ("gradient", "forward"))
        print(f"| {scope} | {row['gradient_first_s']:.1f} | {row['gradient_shrunk_s']:.1f} | "
              f"{row['gradient_steady_s']:.2f} | {row['forward_first_s']:.1f} | {row['forward_shrunk_s']:.1f} | "
              f"{row['forward_steady_s']:.2f} | {row['graphs']} | {total:.0f} |", flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as f:
                f.write(json.dumps({"date": str(date.today()), "device": name, "kind": "compile", "model": row["model"],
                                    "resolution": row["resolution"], "latent": args.latent or None,
                                    "batch": args.batch[0], "shrunk_batch": args.batch[1],
                                    "precision": args.precision, "compile": scope != "eager",
                                    "compile_scope": None if scope == "eager" else scope, "solver": None,
                                    "ms_per_image_iteration": None, "images_per_second": None,
                                    "peak_memory_mb": None, "compile_seconds": round(total, 1), **row}) + "\n")


if __name__ == "__main__":
    main()
