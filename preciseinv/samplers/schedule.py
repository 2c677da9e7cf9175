"""The inference schedule: which timesteps the sampler visits and the alpha-bar of each state.

Timesteps come from the model's own scheduler config through diffusers (``set_timesteps`` honours its
``timestep_spacing`` and ``steps_offset``), so an inversion visits exactly the states the sampler visits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.samplers.base import StepSchedule


@dataclass(frozen=True)
class Schedule(StepSchedule):
    """States x_{t_1} .. x_{t_T} in ascending noise order (index k = 0 is the least noisy step).

    ``alphas[k]`` is alpha-bar at t_{k+1}; ``alphas_prev[k]`` that of the state the denoising step from t_{k+1}
    lands on: t_k, or the scheduler's final alpha-bar for the last step (k = 0), whose output is the sample.
    """

    alphas: torch.Tensor  # (T,) float64
    alphas_prev: torch.Tensor  # (T,) float64


def build_schedule(scheduler_config: dict, num_steps: int, timestep_spacing: str | None = None,
                   timesteps: list[int] | None = None) -> Schedule:
    """Timesteps and alpha-bars for ``num_steps`` DDIM steps of a model's scheduler config.

    ``timestep_spacing`` overrides the config's ("leading", "trailing", "linspace"); ``timesteps`` overrides all.
    """
    from diffusers import DDIMScheduler

    if num_steps < 1:
        raise PreciseInvError(f"num_steps must be at least 1, got {num_steps}; set num_steps=2 (the paper's T)")
    overrides = {"timestep_spacing": timestep_spacing} if timestep_spacing else {}
    scheduler = DDIMScheduler.from_config(dict(scheduler_config), **overrides)
    if timesteps is None:
        scheduler.set_timesteps(num_steps)
        timesteps = [int(t) for t in scheduler.timesteps.flip(0)]
    else:
        timesteps = sorted(int(t) for t in timesteps)
    if len(timesteps) != num_steps or len(set(timesteps)) != num_steps:
        hint = f" (num_steps={len(timesteps)} takes these)" if len(set(timesteps)) == len(timesteps) else ""
        raise PreciseInvError(f"expected {num_steps} distinct timesteps, got {timesteps}{hint}")
    alphas_cumprod = scheduler.alphas_cumprod.double()  # (num_train_timesteps,)
    alphas = alphas_cumprod[timesteps]  # (T,)
    final = torch.tensor([float(scheduler.final_alpha_cumprod)], dtype=torch.float64)
    alphas_prev = torch.cat([final, alphas[:-1]])  # (T,)
    return Schedule(tuple(timesteps), alphas, alphas_prev)
