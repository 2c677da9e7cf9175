"""PreciseInv (NeurIPS 2025): progressive inversion, one learned eps*_t per step.

    x*_0 = x0
    for t = t_1 .. t_T:
        eps*_t <- DDIM-inversion step from x*_{t-1}              (initialisation)
        minimise ||mu(x*_t) - x*_{t-1}||^2 over eps*_t, until below eta or max_iters
        x*_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps*_t
    return x*_T
"""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.methods.base import InversionResult
from preciseinv.methods.subproblem import NoiseSubproblem
from preciseinv.samplers import Denoiser, Sampler
from preciseinv.solvers import AdamWSolver


class PreciseInv:
    name = "preciseinv"

    def __init__(self, eta: float = 1e-3, max_iters: int = 200, lr: float = 0.1, betas=(0.9, 0.999),
                 weight_decay: float = 0.01, sync_every: int = 8):
        self.eta, self.max_iters, self.lr = eta, max_iters, lr
        self.solver = AdamWSolver(lr=lr, eta=eta, max_iters=max_iters, betas=tuple(betas),
                                  weight_decay=weight_decay, sync_every=sync_every)

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta, "max_iters": self.max_iters, "lr": self.lr}

    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None) -> InversionResult:
        x0 = x0.detach().float()  # (B, C, H, W)
        result = InversionResult(latent=x0)
        nfe_f = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        nfe_b = torch.zeros_like(nfe_f)
        x_prev, eps_prev = x0, None
        injects = sampler.injects_noise
        for k in range(sampler.num_steps):
            with torch.no_grad():
                x_init = sampler.invert_step(denoiser, x_prev, k, cond)  # (B, C, H, W)
            noise = eps_prev if injects and k > 0 else None  # the z that lands on state k-1: its own eps*
            problem = NoiseSubproblem(sampler, denoiser, k, x0, x_prev, sampler.noise(x0, x_init, k), cond,
                                      noise=noise, learn_noise=sampler.learn_noise)
            solution, stats = self.solver.solve(problem, problem.eps)
            problem.eps.data.copy_(solution)
            eps_prev, z = problem.split()
            result.noises.append(None if z is None else z.detach().clone())
            with torch.no_grad():
                x_prev = problem.state()
            result.iters.append(stats.iters)
            result.residual.append(stats.residual)
            result.converged.append(stats.converged)
            nfe_f += stats.nfe_forward + 1  # + the initialising inversion step
            nfe_b += stats.nfe_backward
        result.latent, result.nfe_forward, result.nfe_backward = x_prev, nfe_f, nfe_b
        return result
