"""Where a short run's seconds go before and around its first batch: each stage as its own fresh process.

    python benchmarks/startup.py --repeats 5

Each row is a command run in a fresh interpreter, the rows alternated ``--repeats`` times, the median wall and CPU
seconds printed. The rows nest: the interpreter, ``import torch``, ``import lightning.pytorch`` (which imports
torchmetrics and torch._dynamo), the mini model's UNet class from diffusers, then the whole
``python -m preciseinv.fit method=ddim ~logger`` on the bundled images, and the same run with W&B (offline). The
difference between two rows is what a stage adds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date

PY = sys.executable
STAGES = [
    ("python", [PY, "-c", "pass"]),
    ("import torch", [PY, "-c", "import torch"]),
    ("import lightning.pytorch", [PY, "-c", "import lightning.pytorch"]),
    ("+ diffusers UNet2DModel", [PY, "-c", "import lightning.pytorch; from diffusers import UNet2DModel"]),
    ("fit method=ddim ~logger", [PY, "-m", "preciseinv.fit", "method=ddim", "~logger"]),
    ("fit method=ddim (W&B offline)", [PY, "-m", "preciseinv.fit", "method=ddim"]),
]


def timed(cmd: list[str], out: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    args = [*cmd, f"output_dir={out}"] if "preciseinv.fit" in cmd else cmd
    subprocess.run(args, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--results", default=None, help="append one JSON line per stage to this file")
    args = p.parse_args()
    walls: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    cpus: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for i, (name, cmd) in enumerate(STAGES):
                wall, cpu = timed(cmd, os.path.join(tmp, f"run-{r}-{i}"))
                walls[name].append(wall)
                cpus[name].append(cpu)
    print(f"| stage | wall s (median of {args.repeats}) | CPU s |\n|---|---|---|")
    for name, _ in STAGES:
        print(f"| {name} | {statistics.median(walls[name]):.2f} | {statistics.median(cpus[name]):.2f} |")
    if args.results:
        with open(args.results, "a") as f:
            for name, _ in STAGES:
                f.write(json.dumps({"kind": "startup", "date": str(date.today()), "stage": name,
                                    "wall_s": round(statistics.median(walls[name]), 3),
                                    "cpu_s": round(statistics.median(cpus[name]), 3), "repeats": args.repeats,
                                    "machine": "2-core x86_64 CPU, torch " + __import__("torch").__version__})
                        + "\n")


if __name__ == "__main__":
    main()
