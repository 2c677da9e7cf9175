"""Plain DDIM inversion: one network call per step, x_t from x_{t-1} with eps evaluated at x_{t-1}.

The residual ||mu(x_t) - x_{t-1}||^2 of each step is measured afterwards for the report (those calls are
diagnostics, not counted in ``nfe_forward``); ``eta`` only sets what counts as converged.
"""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.methods.base import InversionResult, record_step
from preciseinv.samplers import Denoiser, Sampler


class DDIMInversion:
    name = "ddim"
    network_gradients = False  # never differentiates the network (data.batch_size=auto probes a forward only)

    def __init__(self, eta: float = 1e-3):
        self.eta = eta

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta}

    @torch.no_grad()
    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks=None) -> InversionResult:
        x_prev = x0.detach().float()  # (B, C, H, W)
        B = x_prev.shape[0]
        result = InversionResult(latent=x_prev)
        for k in range(sampler.num_steps):
            x = sampler.invert_step(denoiser, x_prev, k, cond)
            record_step(result, sampler, denoiser, x, x_prev, x0, k, cond, self.eta)
            x_prev = x
        steps = torch.full((B,), sampler.num_steps, dtype=torch.long, device=x_prev.device)
        result.latent, result.nfe_forward, result.nfe_backward = x_prev, steps, torch.zeros_like(steps)
        return result
