"""``method=gnri``: GNRI (Samuel et al., "Lightning-Fast Image Inversion and Editing for Text-to-Image Diffusion
Models", ICLR 2025): guided Newton-Raphson on each step's implicit inversion equation.

Per step k, from the state below x_prev, with z_0 = x_prev and z_{i+1} the inversion update taken with the
network's estimate at z_i:

    next_i = invert(x_prev, e(z_i))
    F_i    = |next_i - z_i| / c_k + alpha / 2 ((next_i - c_k x0) / s_k)^2        (elementwise; c_k x0 + s_k eps is
                                                                                 the step's forward-noising law)
    z_{i+1} = z_i + c_k sign(next_i - z_i) mean(F_i)                               (their scalar Newton-Raphson step)

and x_t is the next_i with the lowest mean(F_i). The guidance term keeps x_t likely under the forward process
(the distance is measured, as in the official code, in the k-diffusion scale x / c_k). Defaults are the official
code's (github.com/dvirsamuel/NewtonRaphsonInversion, ``inv_hp = [2, 0.1, 0.2]``): 2 iterations, alpha = 0.1. Its
gradient is that of |next - z| alone (the network call is outside autograd there), so it needs no network
backward: ``n_iters`` forward calls per step; with ``n_iters=1`` it is DDIM inversion.
"""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.methods.base import InversionResult, estimate, record_step
from preciseinv.samplers import Denoiser, Sampler


class GNRI:
    name = "gnri"
    network_gradients = False  # never differentiates the network (data.batch_size=auto probes a forward only)

    def __init__(self, eta: float = 1e-3, n_iters: int = 2, alpha: float = 0.1):
        self.eta, self.n_iters, self.alpha = eta, max(1, n_iters), alpha

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta, "n_iters": self.n_iters, "alpha": self.alpha}

    @torch.no_grad()
    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks=None) -> InversionResult:
        x0 = x0.detach().float()  # (B, C, h, w)
        result = InversionResult(latent=x0)
        x_prev = x0
        for k in range(sampler.num_steps):
            c = sampler.state(torch.ones_like(x0[:1]), torch.zeros_like(x0[:1]), k)  # (1, ...) the x0 coefficient
            mean, s = c * x0, sampler.state_gain(k)  # the forward-noising law of step k
            z, best, best_score = x_prev, None, None
            for _ in range(self.n_iters):
                nxt = sampler.invert_from(estimate(sampler, denoiser, z, k, cond), k, x_prev)  # (B, C, h, w)
                F = (nxt - z).abs() / c + self.alpha / 2 * ((nxt - mean) / s).pow(2)
                score = F.flatten(1).mean(1)  # (B,)
                if best is None:
                    best, best_score = nxt, score
                else:
                    better = (score < best_score).view(-1, 1, 1, 1)
                    best, best_score = torch.where(better, nxt, best), torch.minimum(score, best_score)
                z = z + c * torch.sign(nxt - z) * score.view(-1, 1, 1, 1)
            record_step(result, sampler, denoiser, best, x_prev, x0, k, cond, self.eta)
            x_prev = best
        steps = torch.full((x0.shape[0],), self.n_iters * sampler.num_steps, dtype=torch.long, device=x0.device)
        result.latent, result.nfe_forward, result.nfe_backward = x_prev, steps, torch.zeros_like(steps)
        return result
