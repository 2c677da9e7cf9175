"""Which solver when: PSNR, converged fraction, network cost and seconds per image for each
model x timestep spacing x solver x eta, printed as a Markdown table (docs/benchmarks.md).

    python benchmarks/solvers.py                                   # every model below, both spacings, all solvers
    python benchmarks/solvers.py --models mini tiny-lcm --solvers adamw hybrid --eta 1e-3 1e-5
    python benchmarks/solvers.py --models /path/to/diffusers/dir --lr 0.1
    python benchmarks/solvers.py --suite eval --solvers adamw hybrid --eta 1e-3 --crops 16   # the held-out suite
    python benchmarks/solvers.py --suite tune --solvers hybrid 'hybrid@phases=[spectral,adam]'   # a variant

Models: ``mini`` (the embedded DDPM), ``mini-clip`` (a second pixel DDPM, trained with another seed and
``clip_sample`` on: benchmarks/assets/mini-ddpm-clip), the tiny random-weight pipelines of every family
(``tiny-sd``, ``tiny-sd-v``, ``tiny-lcm``, ``tiny-sdxl``, ``tiny-sd3``, built in a temporary folder), or any
diffusers directory. Images: the four bundled photos (held out of the mini models' training) and, for
``--random N``, N smooth random images, at the model's resolution. T = 2 (``--num-steps``), empty prompt, the model's
own sampler.
``cost`` = network forward + 2 x backward calls per image, the inversion's own. Method names (``ddim``,
``ceiling``, ``renoise``, ...) are accepted among ``--solvers`` as comparison rows; ``--encoders mean
decoder_inversion`` measures decoder inversion (latent models). A name may carry settings of its config after
``@``, each ``KEY=VALUE``, to compare variants side by side (``--solvers hybrid 'hybrid@phases=[spectral,adam]'``);
``retry`` and ``retry_iters`` are the method's (``hybrid@retry=spectral``: a second solve of what is left above eta).

``--suite`` runs the held-out suite instead (``benchmarks/suite.py``: every family x sizes x weight seeds, split
once by seed into ``tune`` and ``eval``; ``trained``: mini and mini-clip at both spacings) on ``--crops`` crops of
the bundled photos, with ``--cap-1e-5`` iterations per step at eta = 1e-5, and ends with the comparison of the
second solver named against the first (by default the default solver against the paper's adamw): per model, and
the worst case over the models run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from itertools import product
from datetime import date
from pathlib import Path

import torch
from omegaconf import OmegaConf

HERE = Path(__file__).parent
SOLVERS = ("adamw", "fixed_point", "anderson", "spectral", "adam", "newton", "newton_krylov", "hybrid")
TINY = {"tiny-sd": ("save_tiny_sd", {}), "tiny-sd-v": ("save_tiny_sd", {"prediction_type": "v_prediction"}),
        "tiny-lcm": ("save_tiny_lcm", {}), "tiny-sdxl": ("save_tiny_sdxl", {}), "tiny-sd3": ("save_tiny_sd3", {})}
PAPER_LR = {"tiny-lcm": 0.05, "tiny-sdxl": 0.05, "tiny-sd3": 0.025}  # the presets' (paper's) AdamW lr per family


def model_path(name: str, scratch: Path) -> str | None:
    import preciseinv.testing.tiny as tiny

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
    from preciseinv.testing.tiny import write_images

    photos = sorted(Path(str(files("preciseinv") / "assets" / "images")).glob("*.png"))
    out = [load_image(p, resolution) for p in photos]
    if n_random:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_images(Path(tmp), [f"{i}.png" for i in range(n_random)], size=resolution, seed=1)
            out += [load_image(p, resolution) for p in paths]
    return torch.stack(out)


def crops(n: int, resolution: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, R, R) in [-1, 1]: random square crops (a quarter to all of the side) of the bundled photos."""
    from importlib.resources import files

    import torch.nn.functional as F

    from preciseinv.datamodules.images import load_image

    photos = [load_image(p, 128) for p in sorted(Path(str(files("preciseinv") / "assets" / "images")).glob("*.png"))]
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(torch.randint(32, 129, (1,), generator=g))
        top, left = (int(torch.randint(0, 129 - side, (1,), generator=g)) for _ in range(2))
        crop = photo[None, :, top:top + side, left:left + side]
        out.append(F.interpolate(crop, size=(resolution, resolution), mode="area")[0])
    return torch.stack(out).clamp(-1, 1)


def solver_spec(spec: str):
    """``NAME@KEY=VALUE@...``: a solver (or method) and settings of its config, e.g. ``hybrid@phases=[spectral,adam]``
    -> (NAME, the settings as a config). Rows, resumption and the comparison go by the whole spec."""
    name, *sets = spec.split("@")
    bad = [s for s in sets if "=" not in s]
    if bad:
        raise SystemExit(f"--solvers {spec}: each setting after '@' is KEY=VALUE, got {bad[0]!r}")
    return name, OmegaConf.from_dotlist(sets)


def engine_for(model, solver: str, spacing: str | None, eta: float, max_iters: int, lr: float,
               encoder: str = "mean", num_steps: int = 2):
    """The inversion engine of a solver spec (``NAME@KEY=VALUE...``) on a loaded model, T steps, empty prompt."""
    from preciseinv.builder import build_engine, inverter_config
    from preciseinv.methods import METHODS

    # "ddim", "ceiling", ... are methods (rows for comparison); the other names are PreciseInv's solvers
    base, sets = solver_spec(solver)
    method, rule = (base, "hybrid") if base in METHODS else ("preciseinv", base)
    retry = {key: sets.pop(key) for key in ("retry", "retry_iters") if key in sets}  # the method's second solve
    cfg = inverter_config(model, method, rule, encoder, eta=eta, max_iters=max_iters, lr=lr, num_steps=num_steps,
                          timestep_spacing=spacing, lpips=False, **retry)
    group = "method" if base in METHODS else "solver"  # where the settings go
    unknown = [key for key in sets if key not in cfg[group]]
    if unknown:
        raise SystemExit(f"--solvers {solver}: {group}={base} has no setting {', '.join(unknown)} "
                         f"(it has {', '.join(k for k in cfg[group] if not k.startswith('_'))})")
    cfg[group] = OmegaConf.merge(cfg[group], sets)
    return build_engine(cfg, model)


def run_one(model, name: str, solver: str, spacing: str | None, eta: float, max_iters: int, lr: float,
            batch: torch.Tensor, encoder: str = "mean", num_steps: int = 2) -> dict:
    engine = engine_for(model, solver, spacing, eta, max_iters, lr, encoder, num_steps)
    start = time.perf_counter()
    out = engine.run(batch)
    seconds = (time.perf_counter() - start) / batch.shape[0]
    rows = out.inversion.per_sample()
    return {"model": name, "spacing": spacing or "default", "timesteps": list(engine.sampler.schedule.timesteps),
            "solver": solver, "encoder": encoder, "eta": eta, "max_iters": max_iters, "n": len(rows),
            "psnr": sum(out.metrics["psnr"]) / len(rows),
            "latent_psnr": sum(-10 * math.log10(max(m, 1e-30)) for m in out.metrics["latent_mse"]) / len(rows),
            "converged": sum(all(r["converged"]) for r in rows) / len(rows),
            "cost": sum(r["cost"] for r in rows) / len(rows), "seconds_per_image": seconds,
            "max_residual": max(max(r["residual"]) for r in rows)}


def run_suite(args, machine: str) -> None:
    """The held-out suite: one row per model x eta x solver, then the comparison of the last solver against the
    first (the default against adamw) per model, and the worst case."""
    import diffusers
    import transformers
    from suite import build, select

    from preciseinv.models import load_model

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    print(f"<!-- {date.today()}, {machine}, T = {args.num_steps}, {args.crops} crops (seed {args.crop_seed}), "
          f"cap {args.max_iters} at eta >= 1e-4 and {args.cap_1e_5} below -->")
    print("| model | half | t | solver | η | PSNR (dB) | converged | cost / image | max residual | s / image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    def cap(eta):
        return args.max_iters if eta >= 1e-4 else args.cap_1e_5

    def key(name, solver, eta):
        return name, solver, eta, cap(eta), args.crops, args.crop_seed, args.num_steps

    done = {}  # rows --out already holds (an interrupted run resumes): not run again, compared with the rest
    if args.out and args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            if r.get("kind", "solver_suite" if "suite" in r else None) != "solver_suite":  # other tables' rows
                continue
            done[(r["suite"], r["solver"], r["eta"], r["max_iters"], r["n"], r.get("crop_seed", 0),
                  len(r["timesteps"]))] = r
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.scratch or Path(tmp)
        for entry in select(args.suite):
            todo = [(e, s) for e, s in product(args.eta, args.solvers) if key(entry.name, s, e) not in done]
            rows += [done[key(entry.name, s, e)] for e, s in product(args.eta, args.solvers)
                     if key(entry.name, s, e) in done]
            if not todo:
                continue
            model = load_model(build(entry, scratch), device="cpu")
            batch = crops(args.crops, model.resolution, args.crop_seed)
            spacing = entry.timestep_spacing
            for eta, solver in todo:
                row = {"suite": entry.name, "half": entry.half, "family": entry.family, "crop_seed": args.crop_seed,
                       **run_one(model, entry.name, solver, spacing, eta, cap(eta), args.lr or entry.lr, batch,
                                 num_steps=args.num_steps)}
                rows.append(row)
                ts = ", ".join(str(int(t)) for t in row["timesteps"])
                print(f"| {entry.name} | {entry.half} | {ts} | {solver} | {eta:g} | {row['psnr']:.2f} | "
                      f"{row['converged']:.2f} | {row['cost']:.0f} | {row['max_residual']:.2e} | "
                      f"{row['seconds_per_image']:.3f} |", flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps({"kind": "solver_suite", "date": str(date.today()), "machine": machine,
                                            **row}) + "\n")
    if len(args.solvers) >= 2:
        print()
        print(compare(rows, args.solvers[0], args.solvers[-1]))


def compare(rows: list[dict], base: str, new: str) -> str:
    """A Markdown table of ``new`` against ``base`` per model and eta, the three conditions (converged fraction >=
    base's, PSNR >= base's - 0.1 dB, mean cost <= 1/2 of base's unless every sample met eta at its start) and
    converged >= 0.9; then the worst case. Latent models also show the latent PSNR (x0_hat against x0, what eta
    bounds): their image PSNR passes through a random VAE."""
    by = {(r["suite"], r["eta"], r["solver"]): r for r in rows}
    lines = [f"| model | η | converged {base} → {new} | PSNR {base} → {new} | cost {base} → {new} (ratio) | "
             "conditions |", "|---|---|---|---|---|---|"]
    worst = {"converged_gap": 0.0, "psnr_gap": float("inf"), "cost_ratio": 0.0, "converged": 1.0}
    failing = []
    for (name, eta, solver), b in by.items():
        n = by.get((name, eta, new))
        if solver != base or n is None:
            continue
        ratio = n["cost"] / max(b["cost"], 1e-9)
        floor = 2 * len(b["timesteps"])  # every sample met eta at its start: no solver can spend less
        checks = {"conv": n["converged"] >= b["converged"], "psnr": n["psnr"] >= b["psnr"] - 0.1,
                  "cost": ratio <= 0.5 or b["cost"] <= floor, "0.9": n["converged"] >= 0.9}
        if not all(checks.values()):
            failing.append(f"{name} η={eta:g}: " + ", ".join(k for k, ok in checks.items() if not ok))
        worst["converged_gap"] = min(worst["converged_gap"], n["converged"] - b["converged"])
        worst["psnr_gap"] = min(worst["psnr_gap"], n["psnr"] - b["psnr"])
        worst["cost_ratio"] = max(worst["cost_ratio"], ratio)
        worst["converged"] = min(worst["converged"], n["converged"])
        ok = " ".join(k for k, v in checks.items() if v)
        latent = (f" (latent {b['latent_psnr']:.1f} → {n['latent_psnr']:.1f})" if "latent_psnr" in b and
                  b["family"] not in ("pixel", "pixel-clip", "mini", "mini-clip") else "")
        lines.append(f"| {name} | {eta:g} | {b['converged']:.2f} → {n['converged']:.2f} | {b['psnr']:.2f} → "
                     f"{n['psnr']:.2f}{latent} | {b['cost']:.0f} → {n['cost']:.0f} ({ratio:.2f}) | {ok} |")
    lines.append("")
    lines.append(f"Worst case of {new} against {base}: converged fraction {worst['converged_gap']:+.2f}, PSNR "
                 f"{worst['psnr_gap']:+.2f} dB, cost ratio {worst['cost_ratio']:.2f}, lowest converged fraction "
                 f"{worst['converged']:.2f}.")
    lines.append("Failing a condition: " + ("; ".join(failing) if failing else "none"))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mini", "mini-clip", *TINY])
    p.add_argument("--suite", nargs="+", default=None,
                   help="held-out suite models, halves (tune, eval, trained) or families (benchmarks/suite.py)")
    p.add_argument("--crops", type=int, default=16, help="--suite: images per model")
    p.add_argument("--crop-seed", type=int, default=0,
                   help="--suite: the crops' seed (0: the evaluation images; tune the trained models on another)")
    p.add_argument("--cap-1e-5", type=int, default=1000, help="--suite: iterations per step at eta < 1e-4")
    p.add_argument("--scratch", type=Path, default=None, help="--suite: keep the built models here")
    p.add_argument("--spacing", nargs="+", default=["default", "trailing"])
    p.add_argument("--solvers", nargs="+", default=["ddim", *SOLVERS])
    p.add_argument("--eta", nargs="+", type=float, default=[1e-3])
    p.add_argument("--encoders", nargs="+", default=["mean"], help="mean | decoder_inversion (latent models)")
    p.add_argument("--max-iters", type=int, default=200)
    p.add_argument("--num-steps", type=int, default=2, help="T")
    p.add_argument("--random", type=int, default=4, help="smooth random images added to the 4 photos")
    p.add_argument("--lr", type=float, default=None, help="adamw's lr (default: the family preset's)")
    p.add_argument("--repeat", type=int, default=1, help="runs per row; seconds are their median (timing noise)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="append one JSON line per row to this file; with --suite, rows it holds are not run again")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from preciseinv.models import load_model

    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if args.suite:
        if args.solvers == p.get_default("solvers"):
            args.solvers = ["adamw", "hybrid"]
        return run_suite(args, machine)
    print(f"<!-- {date.today()}, {machine}, T = {args.num_steps}, max {args.max_iters} iterations per step -->")
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
                                    args.max_iters, lr, batch, encoder, args.num_steps)
                            for _ in range(args.repeat)]
                    row = runs[0]
                    row["seconds_per_image"] = sorted(r["seconds_per_image"] for r in runs)[len(runs) // 2]
                    ts = ", ".join(str(int(t)) for t in row["timesteps"])
                    print(f"| {name} | {row['spacing']} ({ts}) | {solver} | {encoder} | {eta:g} | {row['n']} | "
                          f"{row['psnr']:.2f} | {row['converged']:.0%} | {row['cost']:.0f} | "
                          f"{row['seconds_per_image']:.3f} |", flush=True)
                    if args.out:
                        with open(args.out, "a") as f:
                            f.write(json.dumps({"kind": "solver_dev", "date": str(date.today()), "machine": machine,
                                                **row}) + "\n")


if __name__ == "__main__":
    main()
