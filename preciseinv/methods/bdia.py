"""``method=bdia``: BDIA (Zhang, Lewis & Kleijn, "Exact Diffusion Inversion via Bi-directional Integration
Approximation", ECCV 2024), exact by construction.

States z_0 (= x0), z_1, ..., z_T. With the network's estimate e(z_i) at z_i, D-(z_i) the sampler step from z_i down
to t_{i-1} minus z_i and D+(z_i) the inversion update from z_i up to t_{i+1} minus z_i (both with e(z_i)):

    sampling:   z_{T-1} = z_T + D-(z_T);   z_{i-1} = gamma z_{i+1} + (1 - gamma) z_i - gamma D+(z_i) + D-(z_i)
    inversion:  z_1 = DDIM inversion of z_0;   z_{i+1} = (z_{i-1} - (1 - gamma) z_i + gamma D+(z_i) - D-(z_i)) / gamma

so sampling from the pair (z_T, z_{T-1}) returns z_0 to float precision; z_{T-1} is the latent file's
``companion``. gamma = 0.5 by default (the value the BDIA-DDIM implementations use for few steps; gamma -> 0 is
plain DDIM and not invertible). One network call per step. Needs a deterministic sampler; where it clips
x0_hat, D- and D+ run without that clipping, as the paper defines them, and the record says ``unclipped``.
"""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.methods.base import InversionResult, estimate, exact_sampler, record_step
from preciseinv.samplers import Denoiser, Sampler


def increments(sampler, denoiser, z: torch.Tensor, i: int, cond) -> tuple[torch.Tensor, torch.Tensor]:
    """(D-(z_i), D+(z_i)) for the state z_i at step index i - 1 (one network call; D+ is zero at the top)."""
    e = estimate(sampler, denoiser, z, i - 1, cond)
    down = sampler.step_from(e, i - 1, z) - z
    up = sampler.invert_from(e, i, z) - z if i < sampler.num_steps else torch.zeros_like(z)
    return down, up


class BDIA:
    name = "bdia"
    exact = True  # the reconstruction is the input by construction (its residual says nothing)
    network_gradients = False  # never differentiates the network (data.batch_size=auto probes a forward only)
    reconstruction = "bdia"
    coupled = True  # reconstructs from two states: x*_T and its companion
    min_steps = 2  # with one step the relation is a plain DDIM step

    def __init__(self, eta: float = 1e-3, gamma: float = 0.5):
        if not 0 < gamma <= 1:
            raise PreciseInvError(f"method.gamma must be in (0, 1], got {gamma} (0 is DDIM, which cannot be undone)")
        self.eta, self.gamma = eta, gamma

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta, "gamma": self.gamma, "reconstruction": self.reconstruction}

    @torch.no_grad()
    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks=None) -> InversionResult:
        sampler, unclipped = exact_sampler(sampler, self.name)
        g, T = self.gamma, sampler.num_steps
        z = [x0.detach().float()]  # z_0 .. z_T, (B, C, h, w) each
        result = InversionResult(latent=z[0], unclipped=unclipped)
        z.append(sampler.invert_step(denoiser, z[0], 0, cond))  # z_1: the plain inversion step
        record_step(result, sampler, denoiser, z[1], z[0], x0, 0, cond, self.eta)
        for i in range(1, T):
            down, up = increments(sampler, denoiser, z[i], i, cond)
            z.append((z[i - 1] - (1 - g) * z[i] + g * up - down) / g)
            record_step(result, sampler, denoiser, z[i + 1], z[i], x0, i, cond, self.eta)
        steps = torch.full((x0.shape[0],), T, dtype=torch.long, device=x0.device)
        result.latent, result.companion = z[T], z[T - 1]
        result.nfe_forward, result.nfe_backward = steps, torch.zeros_like(steps)
        return result

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, sampler: Sampler, latent: torch.Tensor, cond=None, noises=None,
               companion=None) -> torch.Tensor:
        """BDIA's sampling from the pair (z_T, z_{T-1})."""
        sampler, _ = exact_sampler(sampler, self.name)
        T, g = sampler.num_steps, self.gamma
        if T == 1:
            return sampler.step_from(estimate(sampler, denoiser, latent.float(), 0, cond), 0, latent.float())
        if companion is None:
            raise PreciseInvError("method=bdia reconstructs from two states: the companion state is missing (a latent "
                                  "file's `companion`; API: companion=inversion.result.companion)")
        above, z = latent.float(), companion.float()  # z_{i+1}, z_i
        for i in range(T - 1, 0, -1):
            down, up = increments(sampler, denoiser, z, i, cond)
            above, z = z, g * above + (1 - g) * z - g * up + down
        return z
