"""The solver's inner iteration never waits for the device: no host reads, no data-dependent shapes, no host data
copied in, except at the loop's sync points (every ``sync_every`` iterations)."""

import contextlib
from contextlib import contextmanager
from functools import partial

import pytest
import torch

from preciseinv.accel import SyncAudit
from preciseinv.methods import NoiseSubproblem
from preciseinv.models import load_model
from preciseinv.solvers import (LBFGS, Adam, AdamW, Anderson, FixedPoint, Hybrid, LoopHooks, Newton, NewtonKrylov,
                               SolverLoop, Spectral)

RULES = {"adamw": partial(AdamW, lr=0.1), "fixed_point": FixedPoint, "anderson": Anderson, "adam": Adam,
         "newton_krylov": NewtonKrylov, "hybrid-adamw": partial(Hybrid, phases=("anderson", "adam", "adamw")),
         "newton": Newton, "hybrid": Hybrid, "spectral": Spectral, "lbfgs": LBFGS,
         "hybrid-spectral": partial(Hybrid, phases=("spectral", "fixed_point", "adam"))}


def sanction(monkeypatch, context):
    """Run the loop's two sync points (``_sync``: telemetry and masks, ``_partition``: the first mask read) in
    ``context()``."""
    sync, partition = SolverLoop._sync, SolverLoop._partition

    def _sync(self, *args):
        with context():
            return sync(self, *args)

    def _partition(self, *args):
        with context():
            return partition(self, *args)

    monkeypatch.setattr(SolverLoop, "_sync", _sync)
    monkeypatch.setattr(SolverLoop, "_partition", _partition)


@contextmanager
def audited(monkeypatch):
    """Audit a solve with the loop's sanctioned sync points (the mask read and the telemetry event) excluded."""
    audit = SyncAudit()
    sanction(monkeypatch, audit.paused)
    yield audit


def solve(model, sampler, rule, x0, iters, sync_every, audit=None):
    eps0 = torch.randn_like(x0)
    problem = NoiseSubproblem(sampler, model.predict, 1, x0, x0 + 0.1 * torch.randn_like(x0), eps0,
                              model.condition([""] * x0.shape[0]),
                              noise=torch.randn_like(x0) if sampler.injects_noise else None,
                              learn_noise=sampler.learn_noise, solver=rule)
    with audit or contextlib.nullcontext():
        return SolverLoop(eta=1e-30, max_iters=iters, sync_every=sync_every,
                      ).run(problem, LoopHooks(on_sync=[lambda event: None]))


def setup(path):
    torch.manual_seed(0)
    model = load_model(str(path))
    with torch.no_grad():
        x0 = model.encode(torch.rand(3, 3, model.resolution, model.resolution) * 2 - 1)
    return model, model.sampler(2), x0


@pytest.fixture(scope="module")
def sd(tiny_sd):
    return setup(tiny_sd)


@pytest.mark.parametrize("name", list(RULES))
def test_no_host_sync_between_sync_points(sd, name, monkeypatch):
    model, sampler, x0 = sd
    solve(model, sampler, RULES[name], x0, 2, 1)  # warm-up: the schedule tables reach the device once
    with audited(monkeypatch) as audit:
        stats = solve(model, sampler, RULES[name], x0, 6, 3, audit)
    assert stats.iters.tolist() == [6, 6, 6]  # the work ran (eta is unreachable)
    assert audit.events == [], "\n".join(f"{op} at {where}" for op, where in audit.events)


@pytest.mark.parametrize("family", ["tiny_sd3", "tiny_lcm", "tiny_pixel"])
def test_every_sampler_family_is_sync_free(family, request, monkeypatch):
    """Euler (SD3), LCM (noise injected each step) and a pixel DDPM, with the default and the paper's solver."""
    model, sampler, x0 = setup(request.getfixturevalue(family))
    for rule in (RULES["hybrid"], RULES["adamw"]):
        solve(model, sampler, rule, x0, 2, 1)
        with audited(monkeypatch) as audit:
            solve(model, sampler, rule, x0, 4, 2, audit)
        assert audit.events == [], "\n".join(f"{op} at {where}" for op, where in audit.events)


def test_the_audit_sees_what_would_stall_a_gpu(sd):
    model, sampler, x0 = sd
    cond = model.condition([""] * x0.shape[0])["cond"]
    with SyncAudit() as audit:
        model.modules["unet"](x0, 1, encoder_hidden_states=cond["text"])  # a Python timestep: copied from the host
        float(x0.sum())
        x0[x0 > 0]
        sampler.schedule.alphas.to(device=x0.device, dtype=torch.float32)  # a host table moved to the device
    kinds = [op for op, _ in audit.events]
    assert "aten.lift_fresh.default" in kinds and "aten._local_scalar_dense.default" in kinds
    assert "aten.index.Tensor" in kinds and "aten._to_copy.default" in kinds


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["adamw", "hybrid"])
def test_no_cuda_sync_between_sync_points(sd, name, monkeypatch):
    """On a GPU, CUDA's own sync debug mode raises on any synchronising call outside the sync points."""
    model, sampler, x0 = sd
    model.to("cuda")
    x0 = x0.cuda()

    @contextmanager
    def sync_debug(mode):
        torch.cuda.set_sync_debug_mode(mode)
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("error" if mode == 0 else 0)

    try:
        solve(model, sampler, RULES[name], x0, 2, 1)
        sanction(monkeypatch, lambda: sync_debug(0))  # inside the loop's sync points: allowed
        torch.cuda.synchronize()
        stats = solve(model, sampler, RULES[name], x0, 6, 3, sync_debug("error"))
    finally:
        torch.cuda.set_sync_debug_mode(0)
        model.to("cpu")
    assert stats.iters.tolist() == [6, 6, 6]
