"""``method=easyinv``: EasyInv (Zhang et al., "EasyInv: Toward Fast and Better DDIM Inversion", ICML 2025).

DDIM inversion in which, over a window of steps, each newly inverted latent is blended with the previous one:

    x_t = invert(x_prev);   if start * T < i < (start + length) * T and i > 0:  x_t = w x_t + (1 - w) x_prev

(i counts steps from the least noisy, T the number of steps). Defaults are the official code's recommendation for
SD1.4 (github.com/potato-kitty/EasyInv ``example.py``): start 0.05, length 0.2, w = 0.5; for SDXL it recommends
start 0.85, length 0.1 (``method.inject_start=0.85 method.inject_len=0.1``). Its window is meant for ~50 steps:
at T = 2 or 4 with these settings it holds no step, and EasyInv is DDIM inversion exactly. One network call per
step.
"""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.methods.base import InversionResult, record_step
from preciseinv.samplers import Denoiser, Sampler


class EasyInv:
    name = "easyinv"
    network_gradients = False  # never differentiates the network (data.batch_size=auto probes a forward only)

    def __init__(self, eta: float = 1e-3, inject_start: float = 0.05, inject_len: float = 0.2, weight: float = 0.5):
        self.eta, self.inject_start, self.inject_len, self.weight = eta, inject_start, inject_len, weight

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta, "inject_start": self.inject_start,
                "inject_len": self.inject_len, "weight": self.weight}

    def blends(self, i: int, num_steps: int) -> bool:
        """Whether step i (0 = the least noisy) is blended with the latent below it (the official condition)."""
        return (self.inject_start + self.inject_len) * num_steps > i > self.inject_start * num_steps and i > 0

    @torch.no_grad()
    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks=None) -> InversionResult:
        x_prev = x0.detach().float()  # (B, C, h, w)
        result = InversionResult(latent=x_prev)
        T = sampler.num_steps
        for k in range(T):
            x = sampler.invert_step(denoiser, x_prev, k, cond)
            if self.blends(k, T):
                x = self.weight * x + (1 - self.weight) * x_prev
            record_step(result, sampler, denoiser, x, x_prev, x0, k, cond, self.eta)
            x_prev = x
        steps = torch.full((x0.shape[0],), T, dtype=torch.long, device=x0.device)
        result.latent, result.nfe_forward, result.nfe_backward = x_prev, steps, torch.zeros_like(steps)
        return result
