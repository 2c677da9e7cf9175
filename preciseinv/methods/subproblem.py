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
from preciseinv.samplers import Sampler
from preciseinv.samplers.ddim import Denoiser


class NoiseSubproblem(nn.Module):
    def __init__(self, sampler: Sampler, denoiser: Denoiser, k: int, x0: torch.Tensor,
                 target: torch.Tensor, eps_init: torch.Tensor, cond: Any = None):
        super().__init__()
        self.eps = nn.Parameter(eps_init.detach().float().clone())  # (B, C, H, W) eps*_t
        self.register_buffer("x0", x0.detach().float(), persistent=False)  # (B, C, H, W)
        self.register_buffer("target", target.detach().float(), persistent=False)  # (B, C, H, W) x*_{t-1}
        self.sampler, self.denoiser, self.k, self.cond = sampler, denoiser, k, cond

    def state(self, eps: torch.Tensor | None = None, idx: torch.Tensor | None = None) -> torch.Tensor:
        """x*_t for ``eps`` (default: the parameter) of the samples ``idx`` (default: all)."""
        eps = self.eps if eps is None else eps
        x0 = self.x0 if idx is None else self.x0[idx]
        return self.sampler.state(x0, eps, self.k)

    def forward(self, eps: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Per-sample residual (b,) of the rows ``idx`` at ``eps`` (b, C, H, W)."""
        cond = select(self.cond, idx)
        out = self.sampler.denoise(self.denoiser, self.state(eps, idx), self.k, cond)  # (b, C, H, W) fp32
        return (out - self.target[idx]).pow(2).flatten(1).mean(1)
