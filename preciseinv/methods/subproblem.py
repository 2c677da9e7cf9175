"""One (batch, timestep) subproblem as a tiny module whose only parameter is eps*_t.

    minimise_eps  L_t(eps) = mean ||mu(sqrt(a_t) x0 + sqrt(1 - a_t) eps) - x*_{t-1}||^2     (per sample)

The frozen network is reached through the sampler's ``denoise`` and a plain callable, never registered as a
submodule: state dicts, DDP and checkpoints see eps* alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from preciseinv.models.base import select
from preciseinv.samplers import Denoiser, Sampler


class NoiseSubproblem(nn.Module):
    def __init__(self, sampler: Sampler, denoiser: Denoiser, k: int, x0: torch.Tensor,
                 target: torch.Tensor, eps_init: torch.Tensor, cond: Any = None, noise: torch.Tensor | None = None,
                 learn_noise: bool = False):
        super().__init__()
        self.learn_noise = learn_noise and noise is not None
        init = torch.cat([eps_init, noise], dim=1) if self.learn_noise else eps_init
        # (B, C, H, W) eps*_t, or (B, 2C, H, W) [eps*_t | z*_t] when the step noise is learned jointly
        self.eps = nn.Parameter(init.detach().float().clone())
        self.noise = None if noise is None or self.learn_noise else noise.detach().float()  # a fixed injected z
        self.register_buffer("x0", x0.detach().float(), persistent=False)  # (B, C, H, W)
        self.register_buffer("target", target.detach().float(), persistent=False)  # (B, C, H, W) x*_{t-1}
        self.sampler, self.denoiser, self.k, self.cond = sampler, denoiser, k, cond

    def split(self, param: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(eps*, z) of a parameter value: z is learned, fixed, or None for samplers that inject no noise."""
        param = self.eps if param is None else param
        if self.learn_noise:
            return param.chunk(2, dim=1)
        return param, self.noise

    def state(self, param: torch.Tensor | None = None, idx: torch.Tensor | None = None) -> torch.Tensor:
        """x*_t for a parameter value (default: the parameter) of the samples ``idx`` (default: all)."""
        eps = self.split(param)[0]
        x0 = self.x0 if idx is None else self.x0[idx]
        return self.sampler.state(x0, eps, self.k)

    def forward(self, param: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Per-sample residual (b,) of the rows ``idx`` at the parameter value ``param``."""
        cond = select(self.cond, idx)
        eps, z = self.split(param)
        z = z if z is None or self.learn_noise else z[idx]
        out = self.sampler.denoise(self.denoiser, self.state(param, idx), self.k, cond, z)  # (b, C, H, W)
        return (out - self.target[idx]).pow(2).flatten(1).mean(1)
