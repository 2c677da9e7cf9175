"""Solver telemetry: the loop's sync-point events (k-diffusion style ``callback(dict)``) as logged curves.

For each sampler step k, at every sync point of every batch on rank 0: the median and max residual over the
samples still running, the fraction of the batch converged, how many samples are in each solver phase, and how
many switched phase since the last sync (the hybrid's switch points). W&B plots ``solver/*`` against
``solver/iteration`` (so each batch draws one residual-versus-iteration curve per step); CSV and TensorBoard get
the same keys at a running event count, with the iteration as a column.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from preciseinv.callbacks.loggers import logger_kind


def event_metrics(event: dict) -> dict[str, float]:
    """Flat metric names for one loop event."""
    k = f"solver/step{event['k'] + 1}"
    out = {"solver/iteration": event["iteration"], f"{k}/live": event["live"],
           f"{k}/converged": event["converged_fraction"], "solver/switched": event["switched"]}
    if event["residual_median"] is not None:
        out[f"{k}/residual_median"] = event["residual_median"]
        out[f"{k}/residual_max"] = event["residual_max"]
    out.update({f"{k}/phase/{name}": n for name, n in event["phases"].items()})
    return out


class SolverTelemetry(Callback):
    def __init__(self, every_n_syncs: int = 1):
        self.every = max(1, every_n_syncs)
        self.events = 0

    def on_predict_start(self, trainer, pl_module) -> None:
        self._hook = None
        if not (trainer.is_global_zero and trainer.loggers):
            return
        self._hook = lambda event: self.record(trainer, event)
        pl_module.engine.hooks.on_sync.append(self._hook)  # the engine's public hook list
        for logger in trainer.loggers:
            define = getattr(getattr(logger, "experiment", None), "define_metric", None)
            if logger_kind(logger) == "wandb" and define is not None:
                define("solver/iteration")
                define("solver/*", step_metric="solver/iteration")

    def record(self, trainer, event: dict) -> None:  # not `log`: Lightning overwrites a callback's log
        self.events += 1
        if (self.events - 1) % self.every:
            return
        metrics = event_metrics(event)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=self.events)

    def on_predict_end(self, trainer, pl_module) -> None:
        if getattr(self, "_hook", None) in pl_module.engine.hooks.on_sync:
            pl_module.engine.hooks.on_sync.remove(self._hook)
