"""Euler for rectified flow (SD3): x_t = (1 - s_t) x0 + s_t eps, and the model predicts the velocity v.

Step:            mu(x_t) = x_t + (s_prev - s_t) v(x_t, t)          (FlowMatchEulerDiscreteScheduler.step)
Inversion step:  x_t = x_prev + (s_t - s_prev) v(x_prev, t)         (initialisation of eps*)
Sigmas (shift included) come from the model's own FlowMatchEulerDiscreteScheduler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.samplers.base import BaseSampler, Denoiser, StepSchedule


@dataclass(frozen=True)
class FlowSchedule(StepSchedule):
    """``sigmas[k]`` at ``timesteps[k]`` (the model's input, sigma * num_train_timesteps); ``sigmas_prev[k]`` where
    step k lands (0 for k = 0: the clean output)."""

    sigmas: torch.Tensor  # (T,) float64
    sigmas_prev: torch.Tensor  # (T,) float64


def build_flow_schedule(scheduler_config: dict, num_steps: int, timesteps: list[float] | None = None,
                        mu: float | None = None, sigmas=None) -> FlowSchedule:
    """The schedule of ``num_steps`` Euler steps as the model's scheduler sets it; ``mu``: the resolution-dependent
    shift of schedulers with ``use_dynamic_shifting`` (FLUX, SD3.5; the model adapter computes it from the image
    size), ``sigmas``: what the family's pipeline hands ``set_timesteps`` (FLUX: linspace(1, 1/T, T)). Explicit
    ``timesteps`` (a latent file's, shift included) are used as they are."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if num_steps < 1:
        raise PreciseInvError(f"num_steps must be at least 1, got {num_steps}; set num_steps=2 (the paper's T)")
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(dict(scheduler_config))
    if scheduler.config.get("use_dynamic_shifting") and timesteps is None and mu is None:
        raise PreciseInvError("this flow scheduler shifts sigmas by image size (use_dynamic_shifting): "
                              "build the sampler through the model (model.sampler) so it computes the shift")
    if timesteps is None:
        kwargs = {"mu": mu} if scheduler.config.get("use_dynamic_shifting") else {}
        if sigmas is not None:
            scheduler.set_timesteps(sigmas=[float(s) for s in sigmas], **kwargs)
        else:
            scheduler.set_timesteps(num_steps, **kwargs)
        sig = scheduler.sigmas[:-1].double().flip(0)  # (T,) ascending, shift applied
    else:
        sig = torch.tensor(sorted(timesteps), dtype=torch.float64) / scheduler.config.num_train_timesteps
    ts = tuple(float(s) * scheduler.config.num_train_timesteps for s in sig)
    prev = torch.cat([torch.zeros(1, dtype=torch.float64), sig[:-1]])
    return FlowSchedule(ts, sig, prev)


class EulerFlowSampler(BaseSampler):
    name = "euler"

    def _sigma(self, k: int, prev: bool, like: torch.Tensor) -> torch.Tensor:
        return self._at(self.schedule.sigmas_prev if prev else self.schedule.sigmas, k, like)

    def levels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, sigma) of the states 0..T (0: the output), float64 (T+1,) each: state k is alpha x0 + sigma eps."""
        s = torch.cat([self.schedule.sigmas_prev[:1], self.schedule.sigmas])  # (T+1,)
        return 1 - s, s

    def step(self, model_output: torch.Tensor, k: int, sample: torch.Tensor, noise=None) -> torch.Tensor:
        return sample.float() + (self._sigma(k, True, sample) - self._sigma(k, False, sample)) * model_output.float()

    def frozen_slope(self, k: int) -> float:
        """1: with the velocity fixed, the Euler step is a translation."""
        return 1.0

    def state_gain(self, k: int) -> float:
        return float(self.schedule.sigmas[k])

    def invert_step(self, denoiser: Denoiser, x_prev: torch.Tensor, k: int, cond=None) -> torch.Tensor:
        return self.invert_from(denoiser(x_prev, self.schedule.timesteps[k], cond).float(), k, x_prev)

    def noise_estimate(self, model_output: torch.Tensor, sample: torch.Tensor, k: int, prev: bool = False):
        """The velocity: what the Euler inversion update moves along."""
        return model_output.float()

    def step_from(self, v: torch.Tensor, k: int, x: torch.Tensor) -> torch.Tensor:
        return x.float() + (self._sigma(k, True, x) - self._sigma(k, False, x)) * v

    def invert_from(self, v: torch.Tensor, k: int, x_prev: torch.Tensor) -> torch.Tensor:
        return x_prev.float() + (self._sigma(k, False, x_prev) - self._sigma(k, True, x_prev)) * v

    def state(self, x0: torch.Tensor, eps: torch.Tensor, k: int) -> torch.Tensor:
        s = self._sigma(k, False, eps)
        return (1 - s) * x0 + s * eps

    def noise(self, x0: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
        s = self._sigma(k, False, x)
        return (x.float() - (1 - s) * x0.float()) / s
