"""``method=ceiling``: the autoencoder round trip alone, decode(encode(x)).

Whatever x*_T an inversion finds, a latent model's reconstruction is decode(sample(x*_T)), so it can be no better
than decoding the clean latent x0 itself: this method "inverts" to x0 and reconstructs it by decoding it
directly, with no network call. It is the ceiling row of a report (exact for pixel-space models, where encode and
decode are the identity); its latent file stores x0 and says so (``reconstruction: decode``), and
``reconstruct_file`` honours it.
"""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.methods.base import InversionResult
from preciseinv.samplers import Denoiser, Sampler


class Ceiling:
    name = "ceiling"
    exact = True  # on a pixel model: the reconstruction is the input (a latent one: the autoencoder's)
    network_gradients = False  # never differentiates the network (data.batch_size=auto probes a forward only)
    reconstruction = "decode"  # the latent is x0: decode it, no sampler

    def __init__(self, eta: float = 1e-3):
        self.eta = eta

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta, "reconstruction": self.reconstruction}

    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks=None) -> InversionResult:
        x0 = x0.detach().float()  # (B, C, h, w)
        B, T = x0.shape[0], sampler.num_steps
        zeros = torch.zeros(B, dtype=torch.long, device=x0.device)
        result = InversionResult(latent=x0.clone(), nfe_forward=zeros.clone(), nfe_backward=zeros.clone())
        for _ in range(T):
            result.iters.append(zeros.clone())
            result.residual.append(torch.zeros(B, device=x0.device))
            result.converged.append(torch.ones(B, dtype=torch.bool, device=x0.device))
            result.phase.append(["exact"] * B)
            result.noises.append(None)
        return result

    def sample(self, denoiser: Denoiser, sampler: Sampler, latent: torch.Tensor, cond=None, noises=None,
               companion=None):
        """The 'sampler' of the ceiling: the latent is already the clean state."""
        return latent.float()
