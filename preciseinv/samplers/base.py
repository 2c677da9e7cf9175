"""What every sampler shares: the schedule's bookkeeping, mu through the network, and the sampling loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Callable

import torch

# denoiser(x (B, C, H, W), timestep, cond) -> model_output (B, C, H, W)
Denoiser = Callable[[torch.Tensor, float, object], torch.Tensor]


@dataclass(frozen=True)
class StepSchedule:
    """Steps in ascending noise order (index k = 0 is the least noisy); subclasses add per-step tables."""

    timesteps: tuple

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.tolist() if isinstance(value, torch.Tensor) else list(value)
        return out


class BaseSampler(ABC):
    """Subclasses implement ``step(model_output, k, sample, noise=None)``, ``invert_step``, ``state``, ``noise``,
    and the step's linearisation with the network's estimate held fixed: ``frozen_slope``, ``state_gain`` and
    (samplers that inject noise) ``noise_gain``. Forward-only solvers build their fixed-point map from these.
    """

    name = "base"
    injects_noise = False  # lcm, ddpm: a noise map enters each step but the last
    learn_noise = False  # ddpm: that noise is learned jointly with eps*

    def __init__(self, schedule: StepSchedule):
        self.schedule = schedule
        self._tables: dict = {}  # (id(table), device) -> the fp32 table on that device, copied once per schedule
        self._gains: dict = {}  # k -> (frozen_slope, state_gain, noise_gain) as Python floats

    @property
    def num_steps(self) -> int:
        return self.schedule.num_steps

    def _at(self, table: torch.Tensor, k: int, like: torch.Tensor) -> torch.Tensor:
        """Entry k of a float64 schedule table as an fp32 scalar on ``like``'s device: a view into a copy of the
        table made once per device, so the solver's inner iteration never copies host data to the device (a
        pageable host-to-device copy synchronises the stream)."""
        key = (id(table), like.device)
        if key not in self._tables:
            self._tables[key] = (table, table.to(device=like.device, dtype=torch.float32))  # keeps ``table`` alive
        return self._tables[key][1][k]

    @abstractmethod
    def frozen_slope(self, k: int) -> float:
        """d mu / d x_t at step k with the network's noise (or velocity) estimate held fixed."""

    @abstractmethod
    def state_gain(self, k: int) -> float:
        """d x_t / d eps* of the parameterisation ``state(x0, eps, k)``."""

    def noise_gain(self, k: int) -> float:
        """d mu / d z: how the noise injected by step k moves its output (0 for deterministic samplers)."""
        return 0.0

    def unclipped(self) -> "BaseSampler":
        """This sampler without x0 clipping: itself where it clips nothing."""
        return self

    def gains(self, k: int) -> tuple[float, float, float]:
        """(frozen_slope, state_gain, noise_gain) of step k, computed once: the solver reads them every iteration."""
        if k not in self._gains:
            self._gains[k] = (self.frozen_slope(k), self.state_gain(k), self.noise_gain(k))
        return self._gains[k]

    def denoise(self, denoiser: Denoiser, x: torch.Tensor, k: int, cond=None, noise=None) -> torch.Tensor:
        """mu(x_{t_{k+1}}): one denoising step from step k to the state below it (fp32)."""
        return self.step(denoiser(x, self.schedule.timesteps[k], cond), k, x, noise)

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, x_T: torch.Tensor, cond=None, noises=None) -> torch.Tensor:
        """Run the sampler from the top state x_T down to the output, replaying ``noises[k]`` where injected."""
        x = x_T.float()
        for k in reversed(range(self.num_steps)):
            x = self.denoise(denoiser, x, k, cond, noises[k] if noises is not None and k > 0 else None)
        return x
