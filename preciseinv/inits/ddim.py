"""``init=ddim`` (the default): the paper's start, one DDIM-inversion step from x*_{k-1}."""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.inits.base import Start
from preciseinv.samplers import Denoiser, Sampler


class DDIMStart:
    name = "ddim"

    def __call__(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, x_prev: torch.Tensor, k: int,
                 cond: Any = None, noise: torch.Tensor | None = None) -> Start:
        """The inversion step from x*_{k-1} (``x_prev``, (B, C, h, w)) up to step k: one network call per sample."""
        with torch.no_grad():
            x = sampler.invert_step(denoiser, x_prev, k, cond)  # (B, C, h, w)
        calls = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        return Start(x, calls, [self.name] * x.shape[0])
