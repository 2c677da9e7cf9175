"""``summary.json``: means over the assembled manifest, the run's cost and the solver phases."""

from __future__ import annotations

import json
import math
from pathlib import Path

from preciseinv.outputs.atomic import atomic_write_bytes
from preciseinv.outputs.records import assemble
from preciseinv.solvers.base import network_cost


def finite_mean(values: list) -> float | None:
    """Mean of the values that are neither None nor non-finite; None when there are none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def cost(record: dict) -> int:
    """A manifest record's network cost: forward + 2 x backward calls (also for records written before the
    ``cost`` field existed)."""
    return network_cost(record["nfe_forward"], record["nfe_backward"])


ENCODER_KEYS = ("roundtrip_psnr", "decoder_psnr", "decoder_iters", "decoder_cost")
EDIT_KEYS = ("bg_psnr", "bg_mse", "bg_ssim", "bg_lpips", "clip_whole", "clip_edited", "structure_distance")


def phase_counts(records: list[dict]) -> dict[str, int]:
    """How many (sample, step) subproblems each solver phase converged ("unconverged" for the rest)."""
    counts: dict[str, int] = {}
    for r in records:
        for phase in r.get("phase") or []:
            key = phase or "unconverged"
            counts[key] = counts.get(key, 0) + 1
    return counts


def summarize(records: list[dict], failures: list[dict], config: dict | None = None) -> dict:
    """The ``summary.json`` of a manifest (the last record of each id counts)."""
    latest = {r["id"]: r for r in records}
    rs = list(latest.values())
    lpips = [r.get("lpips") for r in rs]
    return {
        "n": len(rs),
        "n_failed": len({f["id"] for f in failures} - set(latest)),
        "psnr_mean": finite_mean([r["psnr"] for r in rs]),
        "ssim_mean": finite_mean([r["ssim"] for r in rs]),
        "lpips_mean": None if any(v is None for v in lpips) else finite_mean(lpips),
        "latent_mse_mean": finite_mean([r.get("latent_mse") for r in rs]),
        "seconds_per_image": finite_mean([r["seconds"] for r in rs]),
        "peak_memory_mb": max((r["peak_memory_mb"] for r in rs if r.get("peak_memory_mb") is not None), default=None),
        "converged_fraction": finite_mean([float(all(r["converged"])) for r in rs]),
        "nfe_forward_mean": finite_mean([r["nfe_forward"] for r in rs]),
        "nfe_backward_mean": finite_mean([r["nfe_backward"] for r in rs]),
        "cost_mean": finite_mean([cost(r) for r in rs]),
        "phases": phase_counts(rs),
        # encoder=decoder_inversion: the VAE round trip's PSNR, that of D(z*), and what finding z* cost
        **{f"{k}_mean": finite_mean([r.get(k) for r in rs]) for k in ENCODER_KEYS if any(k in r for r in rs)},
        # PIE-Bench edits: background preservation outside the mask, CLIP similarity, structure distance
        **{f"{k}_mean": finite_mean([r.get(k) for r in rs]) for k in EDIT_KEYS if any(k in r for r in rs)},
        "config": config,
    }


def write_summary(output_dir: Path, config: dict | None = None, remove_rank_files: bool = False) -> dict:
    """Assemble the manifest (``records.assemble``) and write ``summary.json`` over it: this run's samples and
    earlier runs' alike."""
    records, failures = assemble(output_dir, remove_rank_files)
    summary = summarize(records, failures, config)
    atomic_write_bytes(Path(output_dir) / "summary.json", json.dumps(summary, indent=2).encode())
    return summary
