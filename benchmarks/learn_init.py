"""A learned start against the paper's DDIM start, on the trained pixel DDPMs (docs/learned_init.md).

    python benchmarks/learn_init.py                                  # mini and mini-clip, 192 + 32 crops
    python benchmarks/learn_init.py --models mini --train 64 --test 8 --out /tmp/li --jsonl ''
    python benchmarks/learn_init.py --set solver.damping=1 --set solver.momentum=0.7   # other solver settings
    python benchmarks/learn_init.py --learn-set trainer.max_epochs=20                   # other learn_init settings

Per model: invert ``--train`` random 32-px crops of the mini model's training images (``preciseinv.mini``; not the
four bundled photos) with ``python -m preciseinv.fit`` (T = ``--num-steps``, 2 by default; eta = 1e-3; the default
solver, or what ``--set`` overrides); learn a start from that run with ``python -m preciseinv.learn_init`` at its
defaults, or what ``--learn-set`` overrides (wall time recorded); then invert other images, ``--test`` crops drawn
with another seed plus the four bundled photos, with init=ddim, with init=learned (the steps learn_init's judge
kept) and with init=learned init.steps=all (every trained step), and compare converged fraction, mean PSNR and mean
network cost per image (forward + 2 x backward calls, the start's own included). Every step is a command a user
would run; a rerun with the same ``--out`` resumes (fit and learn_init skip what is finished). Prints a Markdown
table and the targets; appends one JSON line per row to ``--jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
MODELS = {"mini": None, "mini-clip": str(HERE / "assets" / "mini-ddpm-clip")}
TRAIN_SEED, TEST_SEED = 1000, 2000  # crops the two sides draw (the mini models' own training used seed 0)


def command(module: str, *args: str) -> float:
    """Run ``python -m preciseinv.<module> args`` (offline, no logger); its wall time in seconds."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"preciseinv.{module}", *args], env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"python -m preciseinv.{module} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def images(out: Path, n_train: int, n_test: int, test_seed: int = TEST_SEED) -> tuple[Path, Path]:
    """The training crops and the held-out set (other crops and the bundled photos), as folders of PNGs."""
    from importlib.resources import files

    from preciseinv.mini.images import export_crops

    suffix = "" if test_seed == TEST_SEED else f"-{test_seed}"  # other held-out images beside the same training
    train, test = out / "images-train", out / f"images-test{suffix}"
    if not train.is_dir():
        export_crops(train, n_train, TRAIN_SEED)
    if not test.is_dir():
        export_crops(test, n_test, test_seed)
        for photo in Path(str(files("preciseinv") / "assets" / "images")).glob("*.png"):
            shutil.copy(photo, test / photo.name)
    return train, test


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def measure(name: str, path: str | None, out: Path, train: Path, test: Path, eta: float, T: int,
            sets: tuple = (), learn_sets: tuple = ()) -> list[dict]:
    common = ["~logger", "lpips=false", f"num_steps={T}", f"method.eta={eta}", "data=folder", "data.batch_size=16",
              *sets]
    if path:
        common.append(f"model.path={path}")
    run = out / name / "fit-train"
    command("fit", *common, f"data.root={train}", f"output_dir={run}")
    predictor = out / name / "learn_init"
    done = (predictor / "predictor.json").is_file()
    seconds = command("learn_init", f"runs=[{run}]", f"output_dir={predictor}", *learn_sets)
    info = json.loads((predictor / "predictor.json").read_text())
    seconds = info["trained"]["seconds"] if done else seconds  # a resumed benchmark keeps the first measurement
    rows = []
    starts = {"ddim": [], "learned": ["init=learned", f"init.path={predictor}"],  # the steps the judge kept
              "learned, every step": ["init=learned", f"init.path={predictor}", "init.steps=all"]}
    for init, extra in starts.items():
        target = out / name / f"fit-{test.name.replace('images-', '')}-{init.replace(', ', '-').replace(' ', '-')}"
        command("fit", *common, f"data.root={test}", f"output_dir={target}", *extra)
        s = summary(target)
        rows.append({"kind": "learned_init", "model": name, "init": init, "num_steps": T, "eta": eta,
                     "overrides": list(sets), "learn_overrides": list(learn_sets),
                     "train_images": info["trained"]["images"], "n": s["n"],
                     "converged_fraction": s["converged_fraction"], "psnr_mean": s["psnr_mean"],
                     "cost_mean": s["cost_mean"], "seconds_per_image": s.get("seconds_per_image"),
                     "learn_init_seconds": seconds, "val_residual": info["trained"]["best_val_residual"],
                     "val_residual_ddim": (info["trained"].get("last") or {}).get("val/residual_ddim"),
                     "learned_steps": [k + 1 for k in info["steps"]], "judged": info.get("judged")})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--train", type=int, default=192, help="crops inverted to learn from")
    p.add_argument("--test", type=int, default=32, help="other crops inverted with each start (+ the 4 photos)")
    p.add_argument("--test-seed", type=int, default=TEST_SEED,
                   help="the held-out crops' seed: another one tests a trained predictor on images nobody has seen")
    p.add_argument("--eta", type=float, default=1e-3)
    p.add_argument("--num-steps", type=int, default=2, help="T")
    p.add_argument("--out", type=Path, default=None, help="keep the runs here (a rerun resumes); default: a temp dir")
    p.add_argument("--jsonl", default=str(HERE / "results.jsonl"), help="append one JSON line per row ('' : none)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a fit override for every run (repeatable), e.g. --set solver.damping=1")
    p.add_argument("--learn-set", dest="learn_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a learn_init override (repeatable), e.g. --learn-set trainer.max_epochs=20")
    args = p.parse_args()
    import torch

    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        train, test = images(out, args.train, args.test, args.test_seed)
        print(f"<!-- {date.today()}, {machine}, T = {args.num_steps}, eta = {args.eta:g}, {args.train} training crops, "
              f"{args.test} held-out crops (seed {args.test_seed}) + 4 photos -->")
        print("| model | init | images | converged | PSNR (dB) | cost / image | s / image | learn_init (s) | "
              "learned steps |")
        print("|---|---|---|---|---|---|---|---|---|")
        results = []
        for name in args.models:
            rows = measure(name, MODELS[name], out, train, test, args.eta, args.num_steps, tuple(args.sets),
                           tuple(args.learn_sets))
            for r in rows:
                print(f"| {name} | {r['init']} | {r['n']} | {r['converged_fraction']:.2f} | {r['psnr_mean']:.2f} | "
                      f"{r['cost_mean']:.1f} | {r['seconds_per_image']:.3f} | "
                      f"{r['learn_init_seconds']:.0f} | "
                      f"{', '.join(map(str, r['learned_steps'])) or 'none' if r['init'] == 'learned' else ''} |",
                      flush=True)
                if args.jsonl:
                    with open(args.jsonl, "a") as f:
                        f.write(json.dumps({"kind": r["kind"], "date": str(date.today()), "machine": machine,
                                            "test_seed": args.test_seed, **r})
                                + "\n")
            results.append(rows)
    print()
    for name, rows in zip(args.models, results):
        for k, judged in (rows[0]["judged"] or {}).items():
            print(f"{name}: step {int(k) + 1}, held-out solves in learn_init: cost {judged['ddim']['cost']:.1f} from "
                  f"the DDIM start, {judged['learned']['cost']:.1f} from the learned one; converged "
                  f"{judged['ddim']['converged']:.0%} vs {judged['learned']['converged']:.0%}; saving per image "
                  f"{judged['saved']:.1f}, less 2 s.e. {judged['saved_low']:.1f}: "
                  f"{'learned' if judged['kept'] else 'DDIM'} start kept")
    for ddim, learned, _ in results:
        checks = {"cost <= 1/2": learned["cost_mean"] <= ddim["cost_mean"] / 2,
                  "converged >=": learned["converged_fraction"] >= ddim["converged_fraction"],
                  "PSNR >= -0.2 dB": learned["psnr_mean"] >= ddim["psnr_mean"] - 0.2,
                  "learn_init <= 600 s": learned["learn_init_seconds"] <= 600}
        print(f"{ddim['model']}: cost ratio {learned['cost_mean'] / ddim['cost_mean']:.2f}; "
              + ", ".join(f"{k}: {'met' if ok else 'not met'}" for k, ok in checks.items()))


if __name__ == "__main__":
    main()
