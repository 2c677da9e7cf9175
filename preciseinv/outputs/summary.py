"""``summary.json``: means over the assembled manifest, the run's cost and the solver phases, and whether the run
reached its end (``complete``)."""

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


class Summary:
    """The means of ``summary.json``, accumulated one manifest record at a time (a million records need no list)."""

    MEANS = {"psnr_mean": "psnr", "ssim_mean": "ssim", "lpips_mean": "lpips", "latent_mse_mean": "latent_mse",
             "seconds_per_image": "seconds"}

    def __init__(self):
        self.n, self.sums, self.counts, self.seen = 0, {}, {}, set()
        self.lpips_missing, self.peak, self.phases = False, None, {}

    def _add(self, key: str, value) -> None:
        if value is not None and math.isfinite(value):
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def add(self, r: dict) -> None:
        self.n += 1
        for key in self.MEANS.values():
            self._add(key, r.get(key))
        self.lpips_missing |= r.get("lpips") is None
        if r.get("peak_memory_mb") is not None:
            self.peak = max(self.peak or r["peak_memory_mb"], r["peak_memory_mb"])
        self._add("converged", float(all(r["converged"])))
        self._add("nfe_forward", r["nfe_forward"])
        self._add("nfe_backward", r["nfe_backward"])
        self._add("cost", cost(r))
        for phase in r.get("phase") or []:
            self.phases[phase or "unconverged"] = self.phases.get(phase or "unconverged", 0) + 1
        for key in (*ENCODER_KEYS, *EDIT_KEYS):
            if key in r:
                self.seen.add(key)
                self._add(key, r[key])

    def mean(self, key: str) -> float | None:
        return self.sums[key] / self.counts[key] if self.counts.get(key) else None

    def result(self, n_failed: int, config: dict | None = None, complete: bool = False) -> dict:
        return {
            "n": self.n,
            "n_failed": n_failed,
            "complete": complete,  # the run reached its end; false: stopped, or assembled after it died
            **{name: (None if name == "lpips_mean" and self.lpips_missing else self.mean(key))
               for name, key in self.MEANS.items() if name != "seconds_per_image"},
            "seconds_per_image": self.mean("seconds"),
            "peak_memory_mb": self.peak,
            "converged_fraction": self.mean("converged"),
            "nfe_forward_mean": self.mean("nfe_forward"),
            "nfe_backward_mean": self.mean("nfe_backward"),
            "cost_mean": self.mean("cost"),
            "phases": dict(self.phases),
            # encoder=decoder_inversion: the VAE round trip's PSNR, that of D(z*), and what finding z* cost
            **{f"{k}_mean": self.mean(k) for k in ENCODER_KEYS if k in self.seen},
            # PIE-Bench edits: background preservation outside the mask, CLIP similarity, structure distance
            **{f"{k}_mean": self.mean(k) for k in EDIT_KEYS if k in self.seen},
            "config": config,
        }


def summarize(records: list[dict], failures: list[dict], config: dict | None = None, complete: bool = False) -> dict:
    """The ``summary.json`` of a manifest (the last record of each id counts)."""
    latest = {r["id"]: r for r in records}
    summary = Summary()
    for r in latest.values():
        summary.add(r)
    return summary.result(len({f["id"] for f in failures} - set(latest)), config, complete)


def write_summary(output_dir: Path, config: dict | None = None, remove_rank_files: bool = False,
                  complete: bool = False, total: int | None = None) -> dict:
    """Assemble the manifest (``records.assemble``) and write ``summary.json`` over it: this run's samples and
    earlier runs' alike. ``complete``: written at the run's end (by its writer; a stopped run, or one that died and
    was assembled by ``python -m preciseinv.manifest``, is not)."""
    accumulator = Summary()
    _, failures = assemble(output_dir, remove_rank_files, accumulator.add)
    summary = accumulator.result(len({f["id"] for f in failures}), config, complete)
    if total is not None:  # a stopped run: how many samples its dataset holds
        summary["n_total"] = total
    atomic_write_bytes(Path(output_dir) / "summary.json", json.dumps(summary, indent=2).encode())
    return summary
