"""``method=edict``: EDICT (Wallace et al., "EDICT: Exact Diffusion Inversion via Coupled Transformations",
CVPR 2023), exact by construction.

Two coupled states (x, y), both x0 at the start, with mixing p (0.93, the paper's and official code's default).
Denoising step k, with s_k the sampler's step for a fixed noise estimate and e(.) the network's estimate:

    x' = s_k(e(y), x);   y' = s_k(e(x'), y);   x = p x' + (1 - p) y';   y = p y' + (1 - p) x

Inversion runs the same algebra backwards (``invert_from`` undoes ``step_from`` exactly for a fixed estimate),
so sampling from (x_T, y_T) returns x0 to float precision, at two network calls per step each way. x_T is the
latent, y_T its ``companion`` in the latent file. Needs a deterministic sampler (ddim, euler); where it clips
x0_hat, the coupled steps run without that clipping (exact inversion needs the affine step) and the record says
``unclipped``.
"""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.methods.base import InversionResult, estimate, exact_sampler, record_step
from preciseinv.samplers import Denoiser, Sampler


class EDICT:
    name = "edict"
    exact = True  # the reconstruction is the input by construction (its residual says nothing)
    network_gradients = False  # never differentiates the network (data.batch_size=auto probes a forward only)
    reconstruction = "edict"
    coupled = True  # reconstructs from two states: x*_T and its companion

    def __init__(self, eta: float = 1e-3, mix: float = 0.93):
        self.eta, self.mix = eta, mix

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta, "mix": self.mix, "reconstruction": self.reconstruction}

    @torch.no_grad()
    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks=None) -> InversionResult:
        sampler, unclipped = exact_sampler(sampler, self.name)
        p = self.mix
        x = y = x0.detach().float()  # (B, C, h, w)
        result = InversionResult(latent=x, unclipped=unclipped)
        for k in range(sampler.num_steps):
            y_mid = (y - (1 - p) * x) / p
            x_mid = (x - (1 - p) * y_mid) / p
            y_new = sampler.invert_from(estimate(sampler, denoiser, x_mid, k, cond), k, y_mid)
            x_new = sampler.invert_from(estimate(sampler, denoiser, y_new, k, cond), k, x_mid)
            record_step(result, sampler, denoiser, x_new, x, x0, k, cond, self.eta)  # the plain sampler's residual
            x, y = x_new, y_new
        steps = torch.full((x0.shape[0],), 2 * sampler.num_steps, dtype=torch.long, device=x0.device)
        result.latent, result.companion = x, y
        result.nfe_forward, result.nfe_backward = steps, torch.zeros_like(steps)
        return result

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, sampler: Sampler, latent: torch.Tensor, cond=None, noises=None,
               companion=None) -> torch.Tensor:
        """EDICT's coupled denoising from (x_T, y_T)."""
        from preciseinv.errors import PreciseInvError

        if companion is None:
            raise PreciseInvError("method=edict reconstructs from two states: the companion state is missing (a latent "
                                  "file's `companion`; API: companion=inversion.result.companion)")
        sampler, _ = exact_sampler(sampler, self.name)
        p = self.mix
        x, y = latent.float(), companion.float()
        for k in reversed(range(sampler.num_steps)):
            x_mid = sampler.step_from(estimate(sampler, denoiser, y, k, cond), k, x)
            y_mid = sampler.step_from(estimate(sampler, denoiser, x_mid, k, cond), k, y)
            x = p * x_mid + (1 - p) * y_mid
            y = p * y_mid + (1 - p) * x
        return x
