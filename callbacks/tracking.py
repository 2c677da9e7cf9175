"""Sends per-batch inversion metrics to the configured logger (W&B, CSV, TensorBoard).

Lightning refuses ``self.log`` in predict hooks, so this callback calls ``logger.log_metrics`` directly.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


def batch_metrics(output) -> dict[str, float]:
    """Batch means of what the dashboard shows, from an ``engine.BatchOutput``."""
    inv, n = output.inversion, output.latent.shape[0]
    metrics = {f"recon/{k}": sum(v) / n for k, v in output.metrics.items() if v is not None}
    for k, (it, res, conv) in enumerate(zip(inv.iters, inv.residual, inv.converged), start=1):
        metrics[f"step{k}/iters"] = it.float().mean().item()
        metrics[f"step{k}/residual"] = res.float().mean().item()
        metrics[f"step{k}/converged"] = conv.float().mean().item()
    metrics["nfe/forward"] = inv.nfe_forward.float().mean().item()
    metrics["nfe/backward"] = inv.nfe_backward.float().mean().item()
    metrics["speed/seconds_per_image"] = output.seconds_per_image
    return metrics


class InversionTracker(Callback):
    def __init__(self):
        self.images, self.started = 0, None

    def on_predict_start(self, trainer, pl_module) -> None:
        self.images, self.started = 0, time.perf_counter()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if outputs is None or outputs.get("output") is None or not trainer.loggers:
            return
        out = outputs["output"]
        self.images += out.latent.shape[0]
        metrics = batch_metrics(out)
        metrics["speed/images_per_second"] = self.images / max(1e-9, time.perf_counter() - self.started)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=batch_idx)
