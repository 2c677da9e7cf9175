"""``method=renoise``: ReNoise (Garibi et al., "ReNoise: Real Image Inversion Through Iterative Noising", ECCV 2024).

Per step k, from the state below x_prev, the inversion update is repeated with the network re-evaluated at the
current estimate of x_t (re-noising), and the later noise estimates are averaged:

    z_0 = x_prev
    for i = 0 .. K:   eps_i = eps(z_i, t_k)      (eps_0 at x_prev: plain DDIM inversion)
                      z_{i+1} = invert(x_prev, R(eps_i))      R: the noise regularisation, for i >= the averaging start
    x_t = invert(x_prev, R(mean of eps_i over the averaging range))

Defaults are the official code's (github.com/garibida/ReNoise-Inversion, ``src/config.py`` RunConfig): K = 9
re-noising steps; steps with t < 250 use at most 5 and average i in [0, 5), the others average i in [8, 10);
noise regularisation on: 4 rounds of a patch-statistics KL term (lambda 0.065, gradient clipped to +-100) towards
the network's noise estimate at a forward-noised x0 (one extra forward per step), and pix2pix-zero's
auto-correlation term (lambda 20, 5 random rolls). Their noise correction applies to ancestral Euler only, which
this framework does not sample with. With ``renoise_steps=0`` it is DDIM inversion exactly. For flow models the
estimate is a velocity, not a noise, so the regularisation is skipped there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from preciseinv.methods.base import InversionResult, record_step
from preciseinv.samplers import Denoiser, Sampler


def auto_correlation(eps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample (b,) squared auto-correlation of each channel at a random shift, over a pyramid (pix2pix-zero)."""
    loss = eps.new_zeros(eps.shape[0])
    x = eps
    while True:
        shift = int(torch.randint(0, max(1, x.shape[-1] // 2), (1,), generator=generator))
        for dim in (-2, -1):
            loss = loss + (x * torch.roll(x, shifts=shift, dims=dim)).mean((-2, -1)).pow(2).sum(1)
        if x.shape[-1] <= 8 or x.shape[-2] <= 8:
            return loss
        x = F.avg_pool2d(x, kernel_size=2)


def patch_kl(eps: torch.Tensor, reference: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """Per-sample (b,) sum over channels and 4x4 patches of |KL-like divergence| between Gaussians fitted to
    each patch of ``eps`` and of ``reference`` (ReNoise's latents_kl_divergence)."""
    h, w = (eps.shape[-2] // patch) * patch, (eps.shape[-1] // patch) * patch

    def stats(x):  # (b, C, h/p, w/p) mean and unbiased variance over each patch
        x = x[..., :h, :w].unflatten(-1, (w // patch, patch)).unflatten(-3, (h // patch, patch))  # (b,C,hp,p,wp,p)
        x = x.transpose(-3, -2).flatten(-2)  # (b, C, h/p, w/p, p*p)
        return x.mean(-1), x.var(-1)

    (m0, v0), (m1, v1) = stats(eps), stats(reference)
    e = 1e-6
    kl = torch.log((v1 + e) / (v0 + e)) + (v0 + (m0 - m1) ** 2) / (v1 + e) - 1
    return kl.abs().flatten(1).sum(1)


def regularize(eps, reference, generator, steps: int, lambda_kl: float, lambda_ac: float, rolls: int):
    """ReNoise's noise regularisation: gradient steps on eps alone (no network call)."""
    for _ in range(steps):
        if lambda_kl > 0 and reference is not None:
            e = eps.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(patch_kl(e, reference).sum(), e)
            eps = eps - lambda_kl * g.clamp(-100, 100)
        if lambda_ac > 0:
            for _ in range(rolls):
                e = eps.detach().requires_grad_(True)
                with torch.enable_grad():
                    (g,) = torch.autograd.grad(auto_correlation(e, generator).sum(), e)
                eps = eps - lambda_ac * g / rolls
        eps = eps.detach()
    return eps


class ReNoise:
    name = "renoise"
    network_gradients = False  # never differentiates the network (data.batch_size=auto probes a forward only)

    def __init__(self, eta: float = 1e-3, renoise_steps: int = 9, first_step_renoise_steps: int = 5,
                 first_step_max_timestep: int = 250, average: bool = True, average_first_step=(0, 5),
                 average_step=(8, 10), noise_reg_steps: int = 4, lambda_kl: float = 0.065, lambda_ac: float = 20.0,
                 ac_rolls: int = 5, seed: int = 7865):
        self.eta, self.renoise_steps, self.first_steps = eta, renoise_steps, first_step_renoise_steps
        self.first_max_t, self.average = first_step_max_timestep, average
        self.average_first, self.average_rest = tuple(average_first_step), tuple(average_step)
        self.reg = dict(steps=noise_reg_steps, lambda_kl=lambda_kl, lambda_ac=lambda_ac, rolls=ac_rolls)
        self.seed = seed

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta, "renoise_steps": self.renoise_steps,
                "average": self.average, "noise_reg_steps": self.reg["steps"]}

    @torch.no_grad()
    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks=None) -> InversionResult:
        x0 = x0.detach().float()  # (B, C, h, w)
        B, dev = x0.shape[0], x0.device
        result = InversionResult(latent=x0)
        nfe = torch.zeros(B, dtype=torch.long, device=dev)
        gen = torch.Generator().manual_seed(self.seed)
        regularized = self.reg["steps"] > 0 and sampler.name != "euler"
        x_prev = x0
        for k in range(sampler.num_steps):
            t = sampler.schedule.timesteps[k]
            first = t < self.first_max_t
            K = min(self.first_steps, self.renoise_steps) if first else self.renoise_steps
            lo, hi = self.average_first if first else self.average_rest
            reference = None
            if regularized:  # the network's noise estimate at a forward-noised x0 (the KL term's target)
                noise = torch.randn(x0.shape, generator=gen).to(dev)
                forward = sampler.state(x0, noise, k)
                reference = sampler.noise_estimate(denoiser(forward, t, cond), forward, k)
                nfe += 1
            z, total, n = x_prev, None, 0
            for i in range(K + 1):
                eps = sampler.noise_estimate(denoiser(z, t, cond), z, k, prev=(i == 0))
                nfe += 1
                if lo <= i < hi:
                    total, n = (eps if total is None else total + eps), n + 1
                if regularized and (i >= lo or (not self.average and i > 0)):
                    eps = regularize(eps, reference, gen, **self.reg)
                z = sampler.invert_from(eps, k, x_prev)
            if self.average and total is not None:
                mean = total / n
                z = sampler.invert_from(regularize(mean, reference, gen, **self.reg) if regularized else mean, k,
                                        x_prev)
            record_step(result, sampler, denoiser, z, x_prev, x0, k, cond, self.eta)
            x_prev = z
        result.latent, result.nfe_forward, result.nfe_backward = x_prev, nfe, torch.zeros_like(nfe)
        return result
