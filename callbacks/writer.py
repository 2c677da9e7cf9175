"""Writes each batch as it finishes: latents, reconstructions, manifest lines, failure records; then the summary.

Layout under ``output_dir`` (the contract itself lives in ``preciseinv.outputs``)::

    latents/<id>.safetensors   x*_T + metadata to reproduce the reconstruction
    recon/<id>.png             the reconstruction
    records/rank-<k>.jsonl     during a run: this rank's manifest records (failures-rank-<k>.jsonl: failures)
    manifest.jsonl             one JSON object per inverted sample, assembled by rank 0 from the rank files
    failures.jsonl             one per sample that could not be read
    summary.json               means over the manifest, plus the resolved config

Every file appears atomically; a sample's record is appended to its rank's file (one ``write`` + fsync) only
after its latent file is complete.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from preciseinv.outputs import extra_tensors, save_latent
from preciseinv.outputs.images import save_png
from preciseinv.outputs.records import (append_jsonl, finished_ids, rank_files, read_jsonl,  # noqa: F401
                                        repair_jsonl)
from preciseinv.outputs.summary import ENCODER_KEYS, cost, finite_mean, phase_counts, summarize  # noqa: F401
from preciseinv.outputs.summary import write_summary


class InversionWriter(BasePredictionWriter):
    def __init__(self, output_dir: str, save_recon: bool = True, run_config: dict | None = None):
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.save_recon, self.run_config = save_recon, run_config
        self.rank = 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.rank = trainer.global_rank

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
        """Publish the manifest record of a sample whose files are complete (in this rank's record file)."""
        append_jsonl(rank_files(self.output_dir, self.rank)[0], record)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        for failure in prediction["failures"]:
            append_jsonl(rank_files(self.output_dir, self.rank)[1], failure)
        out = prediction["output"]
        if out is None:
            return
        meta = pl_module.engine.metadata()
        steps = out.inversion.per_sample()
        for i, sample_id in enumerate(prediction["id"]):
            record = {"id": sample_id, "source": prediction["source"][i], "prompt": prediction["prompt"][i]}
            record.update({k: (v[i] if v is not None else None) for k, v in out.metrics.items()})
            record.update(steps[i])
            record["size"] = list(out.target.shape[-2:])  # (H, W) of the input as inverted
            record["seconds"] = out.seconds_per_image
            record["peak_memory_mb"] = out.peak_memory_mb
            for key in ("blend_words", "editing_type"):
                if key in prediction:
                    record[key] = prediction[key][i]
            for key, values in (prediction.get("edit_metrics") or {}).items():
                record[key] = values[i] if values is not None else None
            if out.edit is not None:
                record.update(self.store_edit(sample_id, out.target[i], out.recon[i], out.edit[i],
                                              prediction["target"][i]))
            noises = extra_tensors(out.inversion, i)  # step noises (lcm/ddpm), companion (edict/bdia)
            record.update(self.store(sample_id, out.latent[i], out.recon[i], {**meta, **record}, noises))
            self.commit(record)

    def write_summary(self, remove_rank_files: bool = False) -> dict:
        """Assemble ``manifest.jsonl`` from the rank files and write ``summary.json`` over it (rank 0, at the end;
        ``fit.run`` removes the merged rank files once every callback has read them: ``records.remove_merged``)."""
        return write_summary(self.output_dir, self.run_config, remove_rank_files)

    def on_predict_end(self, trainer, pl_module) -> None:
        trainer.strategy.barrier("preciseinv-summary")
        if trainer.is_global_zero:
            self.write_summary()
