"""Writes each batch as it finishes: latents, reconstructions, manifest lines, failure records; then the summary.

Layout under ``output_dir``::

    latents/<id>.safetensors   x*_T + metadata to reproduce the reconstruction
    recon/<id>.png             the reconstruction
    manifest.jsonl             one JSON object per inverted sample
    failures.jsonl             one per sample that could not be read
    summary.json               means over the manifest, plus the resolved config

Every file appears atomically; manifest lines are appended with one ``write`` each.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from preciseinv.datamodules.images import save_png
from preciseinv.outputs import atomic_write_bytes, extra_tensors, save_latent


def append_jsonl(path: Path, record: dict) -> None:
    """One line, one write, O_APPEND: lines from several ranks never interleave. After a torn last line (a writer
    killed mid-write) the record starts on a line of its own, so it is never glued to the torn bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)  # the umask applies
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def repair_jsonl(path: Path) -> int:
    """Cut a torn last line (bytes after the last newline) off a JSONL file; return how many bytes were cut.
    Run once, before any rank appends (fit.run on rank 0)."""
    if not path.is_file():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        keep = data.rfind(b"\n") + 1
        if keep == len(data):
            return 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return len(data) - keep


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (a killed writer) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def finished_ids(output_dir: Path) -> set[str]:
    """Ids whose manifest record and latent file (or shard) both exist: what a rerun skips."""
    return {r["id"] for r in read_jsonl(Path(output_dir) / "manifest.jsonl")
            if (Path(output_dir) / (r.get("shard") or r.get("latent") or "")).is_file()}


def finite_mean(values: list) -> float | None:
    """Mean of the values that are neither None nor non-finite; None when there are none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def cost(record: dict) -> int:
    """A manifest record's network cost: forward + 2 x backward calls (also for records written before the
    ``cost`` field existed)."""
    return record["nfe_forward"] + 2 * record["nfe_backward"]


ENCODER_KEYS = ("roundtrip_psnr", "decoder_psnr", "decoder_iters", "decoder_cost")


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
        "config": config,
    }


class InversionWriter(BasePredictionWriter):
    def __init__(self, output_dir: str, save_recon: bool = True, run_config: dict | None = None):
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.save_recon, self.run_config = save_recon, run_config

    def _inside(self, rel: str) -> Path:
        """``output_dir / rel``, refusing any path that would land outside ``output_dir``."""
        path = (self.output_dir / rel).resolve()
        if not path.is_relative_to(self.output_dir.resolve()):
            raise ValueError(f"refusing to write outside output_dir: {rel!r}")
        return path

    def store(self, sample_id: str, latent, recon, meta: dict, noises: dict | None = None) -> dict:
        """Write one sample's files (x*_T, and the step noises of lcm/ddpm); return the manifest fields."""
        latent_rel, recon_rel = f"latents/{sample_id}.safetensors", f"recon/{sample_id}.png"
        save_latent(self._inside(latent_rel), latent, meta, noises)
        if self.save_recon:
            save_png(self._inside(recon_rel), recon)
        return {"latent": latent_rel, "recon": recon_rel if self.save_recon else None}

    def store_edit(self, sample_id: str, image, recon, edit, target: str) -> dict:
        """The edited image and a grid (input | reconstruction | edit)."""
        import torch

        edit_rel, grid_rel = f"edit/{sample_id}.png", f"grid/{sample_id}.png"
        save_png(self._inside(edit_rel), edit)
        save_png(self._inside(grid_rel), torch.cat([image, recon, edit], dim=2))
        return {"target": target, "edit": edit_rel, "grid": grid_rel}

    def commit(self, record: dict) -> None:
        """Publish the manifest record of a sample whose files are complete."""
        append_jsonl(self.output_dir / "manifest.jsonl", record)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        for failure in prediction["failures"]:
            append_jsonl(self.output_dir / "failures.jsonl", failure)
        out = prediction["output"]
        if out is None:
            return
        meta = pl_module.engine.metadata()
        steps = out.inversion.per_sample()
        for i, sample_id in enumerate(prediction["id"]):
            record = {"id": sample_id, "source": prediction["source"][i], "prompt": prediction["prompt"][i]}
            record.update({k: (v[i] if v is not None else None) for k, v in out.metrics.items()})
            record.update(steps[i])
            record["seconds"] = out.seconds_per_image
            record["peak_memory_mb"] = out.peak_memory_mb
            if out.edit is not None:
                record.update(self.store_edit(sample_id, out.target[i], out.recon[i], out.edit[i],
                                              prediction["target"][i]))
            noises = extra_tensors(out.inversion, i)  # step noises (lcm/ddpm), companion (edict/bdia)
            record.update(self.store(sample_id, out.latent[i], out.recon[i], {**meta, **record}, noises))
            self.commit(record)

    def write_summary(self) -> dict:
        """``summary.json`` over the whole manifest, this run's samples and earlier runs' alike."""
        records = read_jsonl(self.output_dir / "manifest.jsonl")
        latest = list({r["id"]: r for r in records}.values())
        if len(latest) < len(records):  # a resumed sample was redone: keep its last record only
            lines = "".join(json.dumps(r) + "\n" for r in latest)
            atomic_write_bytes(self.output_dir / "manifest.jsonl", lines.encode())
        summary = summarize(latest, read_jsonl(self.output_dir / "failures.jsonl"), self.run_config)
        atomic_write_bytes(self.output_dir / "summary.json", json.dumps(summary, indent=2).encode())
        return summary

    def on_predict_end(self, trainer, pl_module) -> None:
        trainer.strategy.barrier("preciseinv-summary")
        if trainer.is_global_zero:
            self.write_summary()
