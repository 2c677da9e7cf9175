"""``data.batch_size=auto``: the largest batch that fits the device, found once per run.

On a GPU the probe runs the work that bounds memory at the run's latent size, precision and conditioning: one
denoiser forward and backward w.r.t. its input where the method may differentiate the network (a gradient solver,
or the hybrid, whose last phase is one), one forward without a graph otherwise (DDIM, ReNoise, ``solver=
fixed_point``...: far less memory, so far larger batches), for growing batch sizes (doubling, then bisection),
catching out-of-memory; it keeps ``headroom`` of the largest that fitted for the solver state, the VAE (which runs
``vae_batch`` images at a time) and the metrics. All ranks take the smallest rank's answer (shape-bucketed batches
must be the same everywhere). On a CPU, memory is not the limit: ``CPU_BATCH`` (8) is used.
"""

from __future__ import annotations

from typing import Callable

import torch

CPU_BATCH = 8


def largest_fitting(fits: Callable[[int], bool], limit: int = 256) -> int:
    """The largest n in [1, limit] with fits(n), assuming fits is monotone (0 if even 1 does not fit)."""
    good, n = 0, 1
    while n <= limit and fits(n):
        good, n = n, n * 2
    bad = min(n, limit + 1)
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def probe(engine, resolution: int | tuple[int, int], device: torch.device, precision: str = "32-true",
          limit: int = 256, headroom: float = 0.85) -> int:
    """The batch size to use for ``engine`` at ``resolution`` on ``device`` (see the module docstring)."""
    if device.type != "cuda":
        return CPU_BATCH
    from preciseinv.accel.settings import autocast

    size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    model = engine.model
    with torch.no_grad():
        latent = model.encode(torch.zeros(1, 3, *size, device=device))  # (1, C, h, w)
    gradient = bool(getattr(engine.method, "network_gradients", True))  # unknown: assume the heavier work

    def fits(n: int) -> bool:
        try:
            with autocast(device, precision):
                network_step(engine, n, latent.shape[1:], gradient)
            torch.cuda.synchronize(device)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    n = max(1, int(largest_fitting(fits, limit) * headroom))
    if getattr(model, "static_shapes", False):  # CUDA graphs: a bucket size, so the shrinking set finds padding
        from preciseinv.solvers.buckets import bucket_floor

        n = bucket_floor(n)
    return n


def network_step(engine, n: int, latent_shape, gradient: bool) -> torch.Tensor:
    """One solver iteration's network work for ``n`` samples of ``latent_shape`` (C, h, w): a forward, and the
    backward w.r.t. the input when ``gradient``; returns the output (n, C, h, w), or the input gradient."""
    model, timestep = engine.model, engine.sampler.schedule.timesteps[-1]
    x = torch.randn(n, *latent_shape, device=model.device, requires_grad=gradient)
    with torch.set_grad_enabled(gradient):
        out = model.predict(x, timestep, engine.condition([""] * n, n))
        if not gradient:
            return out
        (grad,) = torch.autograd.grad(out.float().pow(2).sum(), x)
    return grad


def agree(n: int, trainer) -> int:
    """The smallest ``n`` over all ranks (the same batches on every rank)."""
    import torch.distributed as dist

    if trainer is None or not (dist.is_available() and dist.is_initialized()):
        return n
    value = torch.tensor([n], device=trainer.strategy.root_device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return int(value.item())
