"""What resuming and finishing cost on a large run, in seconds and peak resident memory:

- the stat-only check of every finished sample's files (``verify=size``, what every rerun does) on a synthetic
  output folder of N samples (a latent file and a reconstruction each, listed with their sizes and checksums);
- ``--assemble``: merging a manifest of N records with a rank file of N more (each id redone once) into the new
  manifest.jsonl and summary.json, as the end of every run does (no sample files needed).

    python benchmarks/verify.py --records 1000000 --dir /scratch/verify-bench     # builds the folder once
    python benchmarks/verify.py --records 100000 --dir /scratch/assemble-bench --assemble
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import time
from datetime import date
from pathlib import Path

LINKS = 60_000


def build(out: Path, n: int) -> None:
    """N samples: ``latents/<id>.safetensors`` and ``recon/<id>.png``, each a hard link to one of two files (a
    directory entry and an inode to stat per file, as in a real folder, without writing gigabytes)."""
    if (out / "manifest.jsonl").is_file() and sum(1 for _ in open(out / "manifest.jsonl")) == n:
        return
    for sub in ("latents", "recon"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    latent, png = os.urandom(4200), os.urandom(2500)
    entries = {ext: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
               for ext, data in (("safetensors", latent), ("png", png))}
    with open(out / "manifest.jsonl", "w") as manifest:
        for i in range(n):
            sid = f"{i:09d}"
            rel = {"safetensors": f"latents/{sid}.safetensors", "png": f"recon/{sid}.png"}
            for ext, data in (("safetensors", latent), ("png", png)):
                source = out / f"{ext}-{i // LINKS}.bin"  # a filesystem caps the links to one inode (ext4: 65000)
                if not source.exists():
                    source.write_bytes(data)
                if not (out / rel[ext]).exists():
                    os.link(source, out / rel[ext])
            record = {"id": sid, "source": f"/data/{sid}.jpg", "latent": rel["safetensors"], "recon": rel["png"],
                      "psnr": 25.0, "converged": [True, True], "residual": [1e-4, 9e-4], "cost": 72,
                      "files": {rel[ext]: entries[ext] for ext in rel}}
            manifest.write(json.dumps(record) + "\n")


def assemble_bench(out: Path, n: int) -> None:
    """manifest.jsonl of N records and records/rank-0.jsonl redoing each of them: write_summary over both."""
    from preciseinv.outputs.summary import write_summary

    (out / "records").mkdir(parents=True, exist_ok=True)
    for path, psnr in ((out / "manifest.jsonl", 20.0), (out / "records" / "rank-0.jsonl", 30.0)):
        with open(path, "w") as f:
            for i in range(n):
                f.write(json.dumps({"id": f"{i:09d}", "source": f"/data/{i:09d}.jpg", "psnr": psnr, "ssim": 0.8,
                                    "lpips": 0.1, "latent_mse": 1e-4, "seconds": 0.5, "converged": [True, True],
                                    "residual": [1e-4, 9e-4], "iters": [3, 40], "phase": ["init", "anderson"],
                                    "nfe_forward": 45, "nfe_backward": 0, "cost": 45, "peak_memory_mb": 900.0,
                                    "latent": f"latents/{i:09d}.safetensors", "recon": f"recon/{i:09d}.png"}) + "\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    summary = write_summary(out, None, remove_rank_files=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert summary["n"] == n and summary["psnr_mean"] == 30.0
    print(f"<!-- {date.today()}, {platform.machine()}, {os.cpu_count()} cores -->")
    print("| records (manifest + rank file) | assemble + summary seconds | peak RSS (MiB) | RSS before (MiB) |")
    print("|---|---|---|---|")
    print(f"| {n} + {n} | {seconds:.1f} | {peak:.0f} | {before:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--dir", type=Path, required=True, help="the synthetic output folder (built once, reused)")
    p.add_argument("--assemble", action="store_true", help="measure the manifest's assembly and summary instead")
    args = p.parse_args()
    if args.assemble:
        return assemble_bench(args.dir, args.records)
    start = time.perf_counter()
    build(args.dir, args.records)
    built = time.perf_counter() - start
    from preciseinv.outputs.records import verify

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    good, damaged = verify(args.dir)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert len(good) == args.records and not damaged
    print(f"<!-- {date.today()}, {platform.machine()}, {os.cpu_count()} cores, folder built in {built:.0f} s -->")
    print("| samples | files | verify=size seconds | peak RSS (MiB) | RSS before (MiB) |")
    print("|---|---|---|---|---|")
    print(f"| {args.records} | {2 * args.records} | {seconds:.1f} | {peak:.0f} | {before:.0f} |")


if __name__ == "__main__":
    main()
