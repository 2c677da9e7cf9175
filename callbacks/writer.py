"""Writes each batch as it finishes: latents, reconstructions, manifest lines, failure records; then the summary.

Layout under ``output_dir`` (the contract itself lives in ``preciseinv.outputs``)::

    latents/<id>.safetensors   x*_T + metadata to reproduce the reconstruction
    recon/<id>.png             the reconstruction
    records/rank-<k>.jsonl     during a run: this rank's manifest records (failures-rank-<k>.jsonl: failures)
    manifest.jsonl             one JSON object per inverted sample, assembled by rank 0 from the rank files
    failures.jsonl             one per sample that could not be read
    summary.json               means over the manifest, the resolved config, whether the run reached its end

Every file appears atomically; a sample's record is appended to its rank's file (one ``write`` + fsync) only
after its latent file is complete.

Off the critical path: the batch's tensors are copied to the host on the calling thread, and the encoding (PNG,
safetensors), writing and fsyncs run on one writer thread, in batch order, while the GPU inverts the next batch
(``background=auto``, the default: on a GPU; ``false`` writes inline, as ``auto`` does on a CPU, whose cores the
network already keeps busy: there the thread only competes with it). At most ``max_pending`` batches wait; a write
that failed (a full disk) stops the run at the next batch with its own error; the end of the run, and any
exception or stop request, first waits for every queued write, so no finished sample is lost.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from preciseinv.outputs import atomic_write_bytes, extra_tensors
from preciseinv.outputs.images import png_bytes
from preciseinv.outputs.latents import latent_bytes
from preciseinv.outputs.records import (append_jsonl, file_entry, finished_ids, rank_files, read_jsonl,  # noqa: F401
                                        repair_jsonl)
from preciseinv.outputs.run_record import forget_last_run, record_resolved, start_record, steady_rate
from preciseinv.outputs.summary import ENCODER_KEYS, cost, finite_mean, phase_counts, summarize  # noqa: F401
from preciseinv.outputs.summary import write_summary


@dataclass
class Sample:
    """One sample's outputs on the host, ready to write."""

    id: str
    record: dict  # the manifest fields known before its files are written
    latent: object  # (C, h, w) x*_T
    recon: object  # (3, H, W) in [-1, 1]
    extra: dict  # step noises (lcm/ddpm), companion (edict/bdia/belm)
    edit: tuple | None = None  # (image, edit, target prompt) for prompt edits


@dataclass
class Batch:
    failures: list = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # engine.metadata(): what reproduces a reconstruction


class InversionWriter(BasePredictionWriter):
    def __init__(self, output_dir: str, save_recon: bool = True, run_config: dict | None = None,
                 background: bool | str = "auto", max_pending: int = 2):
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.save_recon, self.run_config = save_recon, run_config
        self.background, self.max_pending = background, max(1, int(max_pending))
        self.rank = 0
        self._pool: ThreadPoolExecutor | None = None  # made at the first batch (never pickled with the callback)
        self._pending: deque[Future] = deque()
        self._marks: list[tuple[float, int]] = []  # (time, images) at each batch's end: the run's steady pace

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.rank = trainer.global_rank
        self._marks = []
        if self.background == "auto":  # overlap where the host is free while the device computes
            self.background = trainer.strategy.root_device.type == "cuda"

    def on_predict_start(self, trainer, pl_module) -> None:
        """run.json, the one file of a run's settings (this callback is its only writer): written once the model is
        loaded and the batch size resolved, so a run that fails before that leaves none."""
        if trainer.is_global_zero and self.run_config is not None:
            resolved = {**getattr(pl_module, "resolved", {}), "startup": dict(getattr(pl_module, "startup", {}))}
            start_record(self.output_dir / "run.json", self.run_config, resolved)

    def forget_last_run(self) -> None:
        """A rerun that finds nothing to do: the previous run's ``resolved`` and ``last_run`` are not its own."""
        forget_last_run(self.output_dir)

    def _inside(self, rel: str) -> Path:
        """``output_dir / rel``, refusing any path that would land outside ``output_dir``."""
        path = (self.output_dir / rel).resolve()
        if not path.is_relative_to(self.output_dir.resolve()):
            raise ValueError(f"refusing to write outside output_dir: {rel!r}")
        return path

    def write_file(self, rel: str, data: bytes, files: dict) -> str:
        """Write ``output_dir/rel`` atomically and note its size and SHA-256 in ``files`` (the record's)."""
        atomic_write_bytes(self._inside(rel), data)
        files[rel] = file_entry(data)
        return rel

    def store(self, sample_id: str, latent, recon, meta: dict, noises: dict | None = None) -> dict:
        """Write one sample's files (x*_T, and the step noises of lcm/ddpm); return the manifest fields, with the
        size and checksum of each file under ``files``."""
        files = {}
        latent_rel = self.write_file(f"latents/{sample_id}.safetensors", latent_bytes(latent, meta, noises), files)
        recon_rel = self.write_file(f"recon/{sample_id}.png", png_bytes(recon), files) if self.save_recon else None
        return {"latent": latent_rel, "recon": recon_rel, "files": files}

    def store_edit(self, sample_id: str, image, recon, edit, target: str) -> dict:
        """The edited image and a grid (input | reconstruction | edit)."""
        import torch

        files = {}
        edit_rel = self.write_file(f"edit/{sample_id}.png", png_bytes(edit), files)
        grid_rel = self.write_file(f"grid/{sample_id}.png", png_bytes(torch.cat([image, recon, edit], dim=2)), files)
        return {"target": target, "edit": edit_rel, "grid": grid_rel, "files": files}

    def commit(self, record: dict) -> None:
        """Publish the manifest record of a sample whose files are complete (in this rank's record file)."""
        append_jsonl(rank_files(self.output_dir, self.rank)[0], record)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self._raise_failed()
        job = self.prepare(prediction, pl_module)
        self._marks.append((time.perf_counter(), len(job.samples)))  # after prepare: the batch is on the host
        if self.background == "auto":  # used without a trainer's setup
            import torch

            self.background = torch.cuda.is_available()
        if not self.background:
            return self.write_batch(job)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="preciseinv-writer")
        self._pending.append(self._pool.submit(self.write_batch, job))
        while len(self._pending) > self.max_pending:  # bounded host memory: wait for the oldest
            self._pending.popleft().result()

    def prepare(self, prediction: dict, pl_module) -> Batch:
        """On the calling thread: the batch's records and its tensors on the host."""
        job = Batch(failures=list(prediction["failures"]))
        out = prediction["output"]
        if out is None:
            return job
        job.meta = pl_module.engine.metadata()
        steps = out.inversion.per_sample()
        latent, recon = out.latent.cpu(), out.recon.cpu()
        edit = out.edit.cpu() if out.edit is not None else None
        target = out.target.cpu() if edit is not None else None  # the input image: only the edit grid shows it
        for i, sample_id in enumerate(prediction["id"]):
            record = {"id": sample_id, "source": prediction["source"][i], "prompt": prediction["prompt"][i]}
            if (prediction.get("source_file") or [None] * (i + 1))[i]:  # the image file as read: a rerun checks it
                record["source_file"] = prediction["source_file"][i]
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
            extra = {k: v.cpu() for k, v in extra_tensors(out.inversion, i).items()}
            job.samples.append(Sample(sample_id, record, latent[i], recon[i], extra,
                                      (target[i], edit[i], prediction["target"][i]) if edit is not None else None))
        return job

    def write_batch(self, job: Batch) -> None:
        """Write a prepared batch: failure records, then per sample its files and, last, its manifest record."""
        for failure in job.failures:
            append_jsonl(rank_files(self.output_dir, self.rank)[1], failure)
        for sample in job.samples:
            record = sample.record
            if sample.edit is not None:
                image, edit, target = sample.edit
                record.update(self.store_edit(sample.id, image, sample.recon, edit, target))
            files = record.pop("files", {})
            record.update(self.store(sample.id, sample.latent, sample.recon, {**job.meta, **record}, sample.extra))
            record["files"] = {**files, **record["files"]}
            self.commit(record)

    def _raise_failed(self) -> None:
        """Re-raise, on the calling thread, the error of a queued write that has failed."""
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()

    def flush(self, raise_errors: bool = True) -> None:
        """Wait for every queued write (in order); raise the first error unless told not to."""
        error = None
        while self._pending:
            try:
                self._pending.popleft().result()
            except BaseException as err:  # noqa: BLE001 - re-raised below, once every write had its chance
                error = error or err
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if error is not None and raise_errors:
            raise error

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """A failure or a stop request: publish every sample whose outputs were handed over."""
        self.flush(raise_errors=False)

    def write_summary(self, remove_rank_files: bool = False) -> dict:
        """Assemble ``manifest.jsonl`` from the rank files and write ``summary.json`` over it (rank 0, at the end:
        ``complete``; ``fit.run`` removes the merged rank files once every callback has read them:
        ``records.remove_merged``)."""
        return write_summary(self.output_dir, self.run_config, remove_rank_files, complete=True)

    def on_predict_end(self, trainer, pl_module) -> None:
        self.flush()
        if self._marks:  # the last batch ends when its writes do (queued on the thread, or inline): both modes alike
            self._marks[-1] = (time.perf_counter(), self._marks[-1][1])
        pace = self.pace(trainer, pl_module)
        trainer.strategy.barrier("preciseinv-summary")
        if trainer.is_global_zero:
            record_resolved(self.output_dir / "run.json", pace, key="last_run", replace=True)
            self.write_summary()

    def pace(self, trainer, pl_module) -> dict:
        """run.json ``last_run``: the images and batches of every rank together, and their steady images per second
        (each rank's ``steady_rate`` (its first batch left out), summed; None where a rank had fewer than two
        batches)."""
        import torch

        rate = steady_rate(self._marks)
        mine = torch.tensor([sum(n for _, n in self._marks), len(self._marks), rate or 0.0, rate is None],
                            dtype=torch.float64, device=pl_module.device)
        images, batches, total, missing = trainer.strategy.reduce(mine, reduce_op="sum").tolist()
        return {"images": int(images), "batches": int(batches), "ranks": trainer.world_size,
                "steady_images_per_second": None if missing else round(total, 4)}
