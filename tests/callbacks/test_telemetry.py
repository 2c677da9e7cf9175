"""Solver telemetry reaches the loggers: per-step residual curves, convergence, phases and switches."""

from functools import partial

import torch

from preciseinv.callbacks.telemetry import SolverTelemetry, event_metrics
from preciseinv.methods import PreciseInv
from preciseinv.samplers import DDIMSampler, build_schedule
from preciseinv.solvers import Hybrid, LoopHooks


class Recorder:
    """The one method of a Lightning logger the callback uses."""

    def __init__(self):
        self.rows = []

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))


def test_events_become_per_step_metrics():
    event = {"k": 1, "timestep": 501, "iteration": 8, "batch": 4, "live": 3, "converged_fraction": 0.25,
             "residual_median": 1e-3, "residual_max": 5e-3, "phases": {"anderson": 2, "newton": 1}, "switched": 1}
    m = event_metrics(event)
    assert m["solver/step2/residual_median"] == 1e-3 and m["solver/step2/residual_max"] == 5e-3
    assert m["solver/step2/converged"] == 0.25 and m["solver/step2/phase/newton"] == 1
    assert m["solver/iteration"] == 8 and m["solver/switched"] == 1
    assert "solver/step2/residual_median" not in event_metrics({**event, "residual_median": None, "live": 0})


def test_callback_logs_every_sync_of_a_real_inversion():
    from diffusers import DDIMScheduler

    config = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1).config
    sampler = DDIMSampler(build_schedule(config, 2))
    w = torch.randn(4, 4) * 0.5
    denoiser = lambda x, t, c: torch.tanh(torch.einsum("ij,bjhw->bihw", w, x))  # noqa: E731
    method = PreciseInv(eta=1e-6, max_iters=40, solver=partial(Hybrid), sync_every=4)
    logger, telemetry = Recorder(), SolverTelemetry()

    class Trainer:  # what the callback reads of Lightning's trainer
        is_global_zero, loggers = True, [logger]

    class Module:
        class engine:
            hooks = LoopHooks()

    telemetry.on_predict_start(Trainer, Module)
    assert len(Module.engine.hooks.on_sync) == 1  # subscribed through the engine's public hook list
    method.invert(denoiser, sampler, torch.randn(2, 4, 8, 8), hooks=Module.engine.hooks)
    telemetry.on_predict_end(Trainer, Module)
    assert Module.engine.hooks.on_sync == []
    steps = [s for s, _ in logger.rows]
    assert steps == sorted(steps) and len(steps) >= 2
    keys = set().union(*(m for _, m in logger.rows))
    assert {"solver/step1/converged", "solver/step2/residual_median", "solver/step2/phase/anderson"} <= keys
