"""Which solver when: PSNR, converged fraction, network cost and seconds per image for each
model x timestep spacing x solver x eta, printed as a Markdown table (docs/benchmarks.md).

    python benchmarks/solvers.py                                   # every model below, both spacings, all solvers
    python benchmarks/solvers.py --models mini tiny-lcm --solvers adamw hybrid --eta 1e-3 1e-5
    python benchmarks/solvers.py --models /path/to/diffusers/dir --lr 0.1

Models: ``mini`` (the embedded DDPM), ``mini-clip`` (a second pixel DDPM, trained with another seed and
``clip_sample`` on: benchmarks/assets/mini-ddpm-clip), the tiny random-weight pipelines of every family
(``tiny-sd``, ``tiny-sd-v``, ``tiny-lcm``, ``tiny-sdxl``, ``tiny-sd3``, built in a temporary folder), or any
diffusers directory. Images: the four bundled photos (held out of the mini models' training) and, for
``--random N``, N smooth random images, at the model's resolution. T = 2, empty prompt, the model's own sampler.
``cost`` = network forward + 2 x backward calls per image, the inversion's own. Method names (``ddim``,
``ceiling``, ``renoise``, ...) are accepted among ``--solvers`` as comparison rows; ``--encoders mean
decoder_inversion`` measures decoder inversion (latent models).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from itertools import product
from datetime import date
from pathlib import Path

import torch

HERE = Path(__file__).parent
SOLVERS = ("adamw", "fixed_point", "anderson", "adam", "newton", "hybrid")
TINY = {"tiny-sd": ("save_tiny_sd", {}), "tiny-sd-v": ("save_tiny_sd", {"prediction_type": "v_prediction"}),
        "tiny-lcm": ("save_tiny_lcm", {}), "tiny-sdxl": ("save_tiny_sdxl", {}), "tiny-sd3": ("save_tiny_sd3", {})}
PAPER_LR = {"tiny-lcm": 0.05, "tiny-sdxl": 0.05, "tiny-sd3": 0.025}  # the presets' (paper's) AdamW lr per family


def model_path(name: str, scratch: Path) -> str | None:
    import preciseinv.tiny as tiny

    if name == "mini":
        return None
    if name == "mini-clip":
        return str(HERE / "assets" / "mini-ddpm-clip")
    if name in TINY:
        builder, kwargs = TINY[name]
        return str(getattr(tiny, builder)(scratch, **kwargs))
    return name


def images(resolution: int, n_random: int) -> torch.Tensor:
    """(N, 3, R, R) in [-1, 1]: the bundled photos, then smooth random images."""
    from importlib.resources import files

    from preciseinv.datamodules.images import load_image
    from preciseinv.tiny import write_images

    photos = sorted(Path(str(files("preciseinv") / "assets" / "images")).glob("*.png"))
    out = [load_image(p, resolution) for p in photos]
    if n_random:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_images(Path(tmp), [f"{i}.png" for i in range(n_random)], size=resolution, seed=1)
            out += [load_image(p, resolution) for p in paths]
    return torch.stack(out)


def run_one(model, name: str, solver: str, spacing: str | None, eta: float, max_iters: int, lr: float,
            batch: torch.Tensor, encoder: str = "mean") -> dict:
    from preciseinv.api import make_encoder, make_solver
    from preciseinv.engine import InversionEngine
    from preciseinv.methods import METHODS, PreciseInv
    from preciseinv.metrics import ImageMetrics

    # "ddim", "ceiling", ... are methods (rows for comparison); the other names are PreciseInv's solvers
    method = METHODS[solver](eta) if solver in METHODS else PreciseInv(eta, max_iters, make_solver(solver, lr))
    engine = InversionEngine(model, method, 2, timestep_spacing=spacing, metrics=ImageMetrics(False),
                             encoder=make_encoder(encoder))
    start = time.perf_counter()
    out = engine.run(batch)
    seconds = (time.perf_counter() - start) / batch.shape[0]
    rows = out.inversion.per_sample()
    return {"model": name, "spacing": spacing or "default", "timesteps": list(engine.sampler.schedule.timesteps),
            "solver": solver, "encoder": encoder, "eta": eta, "max_iters": max_iters, "n": len(rows),
            "psnr": sum(out.metrics["psnr"]) / len(rows),
            "converged": sum(all(r["converged"]) for r in rows) / len(rows),
            "cost": sum(r["cost"] for r in rows) / len(rows), "seconds_per_image": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mini", "mini-clip", *TINY])
    p.add_argument("--spacing", nargs="+", default=["default", "trailing"])
    p.add_argument("--solvers", nargs="+", default=["ddim", *SOLVERS])
    p.add_argument("--eta", nargs="+", type=float, default=[1e-3])
    p.add_argument("--encoders", nargs="+", default=["mean"], help="mean | decoder_inversion (latent models)")
    p.add_argument("--max-iters", type=int, default=200)
    p.add_argument("--random", type=int, default=4, help="smooth random images added to the 4 photos")
    p.add_argument("--lr", type=float, default=None, help="adamw's lr (default: the family preset's)")
    p.add_argument("--repeat", type=int, default=1, help="runs per row; seconds are their median (timing noise)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="append one JSON line per row to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from preciseinv.models import load_model

    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"<!-- {date.today()}, {machine}, T = 2, max {args.max_iters} iterations per step -->")
    print("| model | spacing (t) | solver | encoder | η | n | PSNR (dB) | converged | cost / image | s / image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            model = load_model(model_path(name, Path(scratch)), device="cpu")
            batch = images(model.resolution, args.random)
            lr = args.lr or PAPER_LR.get(name, 0.1)
            spacings = args.spacing if model.default_sampler != "euler" else ["default"]  # flow: sigmas, no spacing
            for spacing in spacings:
                for eta, encoder, solver in product(args.eta, args.encoders, args.solvers):
                    runs = [run_one(model, name, solver, None if spacing == "default" else spacing, eta,
                                    args.max_iters, lr, batch, encoder) for _ in range(args.repeat)]
                    row = runs[0]
                    row["seconds_per_image"] = sorted(r["seconds_per_image"] for r in runs)[len(runs) // 2]
                    ts = ", ".join(str(int(t)) for t in row["timesteps"])
                    print(f"| {name} | {row['spacing']} ({ts}) | {solver} | {encoder} | {eta:g} | {row['n']} | "
                          f"{row['psnr']:.2f} | {row['converged']:.0%} | {row['cost']:.0f} | "
                          f"{row['seconds_per_image']:.3f} |", flush=True)
                    if args.out:
                        with open(args.out, "a") as f:
                            f.write(json.dumps({"date": str(date.today()), "machine": machine, **row}) + "\n")


if __name__ == "__main__":
    main()
