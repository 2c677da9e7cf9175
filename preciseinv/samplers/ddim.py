"""DDIM (eta = 0), the deterministic sampler of the paper's main results.

Step (Song et al. 2021, eq. 12):   x_prev = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev) * eps_hat
Inversion step (the usual approximation, used to initialise eps*): evaluate the network at the less noisy state
x_prev with the timestep t and run the same update forwards in noise.
"""

from __future__ import annotations

from typing import Literal

import torch

from preciseinv.samplers.base import BaseSampler, Denoiser
from preciseinv.samplers.schedule import Schedule

PredictionType = Literal["epsilon", "sample", "v_prediction"]


def split_prediction(model_output: torch.Tensor, sample: torch.Tensor, alpha: torch.Tensor,
                     prediction_type: PredictionType) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, eps_hat) from a network output at a state with alpha-bar ``alpha`` (scalar or (B, 1, 1, 1))."""
    a, s = alpha.sqrt(), (1 - alpha).sqrt()
    if prediction_type == "epsilon":
        eps = model_output
        return (sample - s * eps) / a, eps
    if prediction_type == "sample":
        x0 = model_output
        return x0, (sample - a * x0) / s
    if prediction_type == "v_prediction":
        return a * sample - s * model_output, a * model_output + s * sample
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def ddim_update(x0: torch.Tensor, eps: torch.Tensor, alpha_next: torch.Tensor) -> torch.Tensor:
    """The state with alpha-bar ``alpha_next`` on the DDIM path through (x0, eps)."""
    return alpha_next.sqrt() * x0 + (1 - alpha_next).sqrt() * eps


class DDIMSampler(BaseSampler):
    """mu and the inversion step for one schedule; the network comes in as a ``Denoiser``."""

    name = "ddim"

    def __init__(self, schedule: Schedule, prediction_type: PredictionType = "epsilon",
                 clip_sample: float | None = None):
        super().__init__(schedule)
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample  # diffusers' clip_sample_range when the config clips x0_hat, else None

    def unclipped(self) -> "DDIMSampler":
        """This sampler without x0 clipping (the exact methods' affine update)."""
        return self if self.clip_sample is None else type(self)(self.schedule, self.prediction_type)

    def levels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, sigma) of the states 0..T (0: the output), float64 (T+1,) each: state k is alpha x0 + sigma eps."""
        abar = torch.cat([self.schedule.alphas_prev[:1], self.schedule.alphas])  # (T+1,)
        return abar.sqrt(), (1 - abar).sqrt()

    def _alpha(self, k: int, prev: bool, like: torch.Tensor) -> torch.Tensor:
        return self._at(self.schedule.alphas_prev if prev else self.schedule.alphas, k, like)

    def _x0_eps(self, model_output: torch.Tensor, sample: torch.Tensor, alpha: torch.Tensor):
        x0, eps = split_prediction(model_output.float(), sample.float(), alpha, self.prediction_type)
        if self.clip_sample is not None:  # as diffusers: x0_hat is clipped, eps_hat is not recomputed
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        return x0, eps

    def step(self, model_output: torch.Tensor, k: int, sample: torch.Tensor, noise=None) -> torch.Tensor:
        """mu from a given network output: the state after denoising ``sample`` at step k (fp32)."""
        x0, eps = self._x0_eps(model_output, sample, self._alpha(k, False, sample))
        return ddim_update(x0, eps, self._alpha(k, True, sample))

    def frozen_slope(self, k: int) -> float:
        """sqrt(a_prev / a): with eps_hat fixed, x0_hat = (x - sqrt(1 - a) eps_hat) / sqrt(a) moves as x / sqrt(a)."""
        return float((self.schedule.alphas_prev[k] / self.schedule.alphas[k]).sqrt())

    def state_gain(self, k: int) -> float:
        return float((1 - self.schedule.alphas[k]).sqrt())

    def invert_step(self, denoiser: Denoiser, x_prev: torch.Tensor, k: int, cond=None) -> torch.Tensor:
        """One DDIM-inversion step from the state below step k up to x_{t_{k+1}}."""
        out = denoiser(x_prev, self.schedule.timesteps[k], cond)
        return self.invert_from(self.noise_estimate(out, x_prev, k, prev=True), k, x_prev)

    def noise_estimate(self, model_output: torch.Tensor, sample: torch.Tensor, k: int, prev: bool = False):
        """eps_hat of a network output at ``sample``, read at step k's alpha-bar (``prev``: the state below's)."""
        return split_prediction(model_output.float(), sample.float(), self._alpha(k, prev, sample),
                                self.prediction_type)[1]

    def step_from(self, eps: torch.Tensor, k: int, x: torch.Tensor) -> torch.Tensor:
        """The denoising step from step k with a given noise estimate (the exact inverse of ``invert_from``
        without clipping)."""
        a = self._alpha(k, False, x)
        x0 = (x.float() - (1 - a).sqrt() * eps) / a.sqrt()
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        return ddim_update(x0, eps, self._alpha(k, True, x))

    def invert_from(self, eps: torch.Tensor, k: int, x_prev: torch.Tensor) -> torch.Tensor:
        """The inversion update with a given noise estimate: x0_hat from x_prev and eps, then up to step k."""
        a_prev = self._alpha(k, True, x_prev)
        x0 = (x_prev.float() - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        return ddim_update(x0, eps, self._alpha(k, False, x_prev))

    def state(self, x0: torch.Tensor, eps: torch.Tensor, k: int) -> torch.Tensor:
        """x*_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps*: the paper's parameterisation of the state at step k."""
        return ddim_update(x0, eps, self._alpha(k, False, eps))

    def noise(self, x0: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
        """eps* such that ``state(x0, eps*, k) == x`` (inverse of ``state``)."""
        a = self._alpha(k, False, x)
        return (x.float() - a.sqrt() * x0.float()) / (1 - a).sqrt()
