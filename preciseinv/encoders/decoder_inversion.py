"""``encoder=decoder_inversion``: x0 = z* = argmin_z ||D(z) - x||^2 per sample, from the posterior mean.

Whatever x*_T an inversion finds, a latent model reconstructs decode(sample(x*_T)), so starting from the
posterior mean caps it at decode(encode(x)): the autoencoder round trip. Inverting the decoder instead (Hong et
al., "On Exact Inversion of DPM-Solvers", ICLR 2024, by gradient descent) finds the latent whose decoding is
closest to the image; the diffusion inversion then inverts z*, and its reconstruction lands near D(z*), above the
round trip. The optimisation runs in the same batched solver loop as the eps* subproblems (per-sample stop once
the image MSE is below ``eta``, the cap, the best iterate kept, non-finite samples stopped, network calls counted:
here decoder forwards and backwards), with Adam at learning rate ``lr`` (no weight decay), in fp32 whatever the
autocast (VAEs overflow in half precision), ``chunk`` images at a time (a decoder backward at 512 px is heavy).
"""

from __future__ import annotations

from functools import partial

import torch
from lightning.pytorch import LightningModule

from preciseinv.encoders.mean import Encoding
from preciseinv.errors import PreciseInvError
from preciseinv.metrics import psnr
from preciseinv.solvers import AdamW, SolverLoop
from preciseinv.solvers.base import network_cost


class DecoderSubproblem(LightningModule):
    """min_z mean ||D(z) - x||^2 per sample; ``eps`` (the loop's name for the parameter) is z (B, C, h, w)."""

    k, timestep = -1, None  # not a sampler step (telemetry labels)

    def __init__(self, model, images: torch.Tensor, z: torch.Tensor, solver):
        super().__init__()
        self.eps = torch.nn.Parameter(z.detach().float().clone())
        self.register_buffer("images", images.detach().float(), persistent=False)  # (B, 3, H, W) in [-1, 1]
        self.model, self.solver = model, solver

    @property
    def batch_size(self) -> int:
        return self.eps.shape[0]

    def configure_optimizers(self):
        return self.solver(self)

    def training_step(self, idx: torch.Tensor, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        r = self.model.decode(self.eps[idx], clamp=False) - self.images[idx]  # (b, 3, H, W)
        return {"loss": r.pow(2).flatten(1).mean(1), "r": r}


class DecoderInversion:
    name = "decoder_inversion"

    def __init__(self, max_iters: int = 300, lr: float = 0.2, eta: float = 1e-5, chunk: int = 8,
                 sync_every: int = 8):
        self.max_iters, self.lr, self.eta, self.chunk = max_iters, lr, eta, max(1, chunk)
        self.loop = SolverLoop(eta=eta, max_iters=max_iters, sync_every=sync_every)

    def describe(self) -> dict:
        return {"name": self.name, "max_iters": self.max_iters, "lr": self.lr, "eta": self.eta}

    def __call__(self, model, images: torch.Tensor, hooks=None) -> Encoding:
        if "vae" not in getattr(model, "modules", {}):
            raise PreciseInvError(f"encoder=decoder_inversion needs a latent model; this {model.family} model works "
                                  "in pixel space (there is no decoder to invert): use encoder=mean")
        parts = [self._chunk(model, images[i:i + self.chunk], hooks) for i in range(0, images.shape[0], self.chunk)]
        x0 = torch.cat([p.x0 for p in parts])
        return Encoding(x0, {k: torch.cat([p.stats[k] for p in parts]) for k in parts[0].stats})

    def _chunk(self, model, images: torch.Tensor, hooks=None) -> Encoding:
        device_type = images.device.type
        with torch.autocast(device_type, enabled=False):  # fp32: decoders overflow in half precision
            images = images.float()
            with torch.no_grad():
                z0 = model.encode(images).float()  # (b, C, h, w) the posterior mean: the start
                roundtrip = model.decode(z0)
            rule = partial(AdamW, lr=self.lr, weight_decay=0.0, returns_best=True)
            problem = DecoderSubproblem(model, images, z0, rule)
            with torch.enable_grad():
                stats = self.loop.run(problem, hooks)
            z = problem.eps.detach()
            with torch.no_grad():
                decoded = model.decode(z)
        return Encoding(z, {"roundtrip_psnr": psnr(roundtrip, images), "decoder_psnr": psnr(decoded, images),
                            "decoder_iters": stats.iters,
                            "decoder_cost": network_cost(stats.nfe_forward, stats.nfe_backward)})
