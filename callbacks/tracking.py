"""Experiment tracking: metrics over all ranks, an image panel, and images per second on the progress bar.

Rank 0 aggregates from the rank record files (``records/rank-<k>.jsonl``), which every rank appends to, so no collective is needed (ranks may run
different numbers of batches in predict, where a per-batch all-gather would hang). Lightning refuses ``self.log``
in predict hooks, so this callback calls the loggers' ``log_metrics`` / ``log_image`` directly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from preciseinv.outputs.images import to_uint8
from preciseinv.outputs.records import complete_length, rank_record_files
from preciseinv.outputs.summary import cost, finite_mean
from preciseinv.solvers.base import network_cost


def aggregate(records: list[dict]) -> dict[str, float]:
    """Means over manifest records: reconstruction metrics, per-step residual / iterations / convergence, work."""
    mean = finite_mean
    out = {f"recon/{k}": mean([r.get(k) for r in records]) for k in ("psnr", "ssim", "lpips", "latent_mse")}
    steps = len(records[0]["residual"]) if records else 0
    for k in range(steps):
        out[f"step{k + 1}/residual"] = mean([r["residual"][k] for r in records])
        out[f"step{k + 1}/iters"] = mean([r["iters"][k] for r in records])
        out[f"step{k + 1}/converged"] = mean([float(r["converged"][k]) for r in records])
    out["converged_fraction"] = mean([float(all(r["converged"])) for r in records])
    out["nfe/forward"] = mean([r["nfe_forward"] for r in records])
    out["nfe/backward"] = mean([r["nfe_backward"] for r in records])
    out["cost"] = mean([cost(r) for r in records])
    out["retried_fp32"] = mean([float(r.get("retried_fp32", False)) for r in records])
    return {k: v for k, v in out.items() if v is not None}


def panel(original: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """(H, 3W, 3) uint8: original | reconstruction | error map (|difference| x 4), images in [-1, 1]."""
    err = ((recon - original).abs().mean(0, keepdim=True) * 4 - 1).clamp(-1, 1).expand(3, -1, -1)
    row = torch.cat([original.clamp(-1, 1), recon.clamp(-1, 1), err], dim=2)  # (3, H, 3W)
    return to_uint8(row)


class InversionTracker(Callback):
    def __init__(self, output_dir: str | None = None, log_every_n_batches: int = 10, image_every_n_batches: int = 50,
                 images_per_panel: int = 4):
        self.output_dir = Path(output_dir) if output_dir else None
        self.log_every, self.image_every, self.images_per_panel = log_every_n_batches, image_every_n_batches, images_per_panel
        self.offsets: dict[Path, int] = {}  # rank record file -> bytes already read
        self.seen, self.started, self.step = 0, 0.0, 0

    def _rank_files(self) -> list[Path]:
        return rank_record_files(self.output_dir)

    def _new_records(self) -> list[dict]:
        """Records every rank published since the last read (from ``records/rank-<k>.jsonl``)."""
        records = []
        for path in self._rank_files():
            offset = self.offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
            self.offsets[path] = offset + len(complete)
            for line in complete.decode(errors="replace").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a torn line a dead run left: skipped
                    continue
        return records

    def on_predict_start(self, trainer, pl_module) -> None:
        if self.output_dir is None:
            writer = next((c for c in trainer.callbacks if hasattr(c, "output_dir") and c is not self), None)
            self.output_dir = Path(writer.output_dir) if writer else Path(trainer.default_root_dir)
        # records a dead earlier run left in the rank files are not this run's speed; start after their last whole
        # line (a torn tail is cut by the next append, and reading from the file's end would then skip records)
        self.offsets = {path: complete_length(path) for path in self._rank_files()}
        self.seen, self.started, self.step = 0, time.perf_counter(), 0

    def _log(self, trainer) -> None:
        records = self._new_records()
        if not records:
            return
        self.seen += len(records)
        metrics = aggregate(records)
        metrics["speed/images_per_second"] = self.seen / max(1e-9, time.perf_counter() - self.started)
        metrics["speed/seconds_per_image"] = sum(r["seconds"] for r in records) / len(records)
        metrics["images_done"] = self.seen
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=self.step)
        self.step += 1

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.is_global_zero or not trainer.loggers:
            return
        if (batch_idx + 1) % self.log_every == 0:
            self._log(trainer)
        out = outputs.get("output") if outputs else None
        if out is not None and batch_idx % self.image_every == 0:
            n = min(self.images_per_panel, out.recon.shape[0])
            rows = [panel(out.target[i], out.recon[i]).numpy() for i in range(n)]
            captions = [f"{outputs['id'][i]}  PSNR {out.metrics['psnr'][i]:.2f} dB" for i in range(n)]
            for logger in trainer.loggers:
                if hasattr(logger, "log_image"):  # W&B
                    logger.log_image("panel/original|recon|error", images=rows, caption=captions, step=self.step)

    def on_predict_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and trainer.loggers:
            self._log(trainer)


class InversionProgressBar(TQDMProgressBar):
    """Lightning's bar (batches, elapsed, time remaining) plus images per second, mean PSNR so far, the fraction
    converged so far and the cost (network forward + 2 x backward calls per image) of this rank."""

    def on_predict_start(self, trainer, pl_module) -> None:
        super().on_predict_start(trainer, pl_module)
        self._images, self._t0, self._psnr, self._converged = 0, time.perf_counter(), [], 0

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        out = outputs.get("output") if outputs else None
        if out is None or self.predict_progress_bar is None:
            return
        self._images += out.latent.shape[0]
        rate = self._images / max(1e-9, time.perf_counter() - self._t0)
        self._psnr += list(out.metrics.get("psnr") or [])
        psnr = finite_mean(self._psnr)
        inv = out.inversion
        if inv.converged:  # T x (B,): an image converged when every step did
            self._converged += int(torch.stack(inv.converged, 1).all(1).sum())
        calls = float(network_cost(inv.nfe_forward, inv.nfe_backward).float().mean())  # network calls per image
        exact = getattr(getattr(pl_module.engine, "method", None), "exact", False)  # no eta to meet
        self.predict_progress_bar.set_postfix(
            {"img/s": f"{rate:.2f}", "psnr": f"{psnr:.1f}" if psnr is not None else "-",
             "conv": "exact" if exact else f"{self._converged / self._images:.0%}", "cost": f"{calls:.0f}"},
            refresh=False)


class WandbLogger:
    """Lightning's ``WandbLogger`` without the ``anonymous=None`` it always hands ``wandb.init`` (wandb >= 0.2x
    prints a deprecation warning for it on every run); everything else as Lightning's."""

    def __new__(cls, *args, **kwargs):
        from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

        logger = LightningWandbLogger(*args, **kwargs)
        if logger._wandb_init.get("anonymous") is None:
            logger._wandb_init.pop("anonymous", None)
        return logger
