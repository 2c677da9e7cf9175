"""The one code path from images to latents: encode, invert, reconstruct, measure.

Both the Lightning module and the Python API call ``InversionEngine``; nothing else runs the algorithm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.methods.base import InversionResult
from preciseinv.metrics import ImageMetrics
from preciseinv.models.base import DiffusionModel, select
from preciseinv.solvers import LoopHooks


@dataclass
class BatchOutput:
    """Everything a writer needs for one batch."""

    latent: torch.Tensor  # (B, C, h, w) x*_T, fp32
    recon: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    target: torch.Tensor  # (B, 3, H, W) in [-1, 1], the preprocessed input
    metrics: dict[str, list[float] | None]  # psnr, ssim, lpips, latent_mse per sample
    inversion: InversionResult
    seconds_per_image: float
    edit: torch.Tensor | None = None  # (B, 3, H, W) in [-1, 1], when target prompts were given
    peak_memory_mb: float | None = None  # CUDA max allocated during the batch; peak RSS of the process on CPU


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated since the last reset on ``device``; on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def check_prompts(prompts, batch_size: int, what: str = "prompts") -> list[str]:
    """One prompt per image (a bare string: the same prompt for every image); a list of another length is one line
    (a text encoder would raise deep inside, a pixel model would ignore it silently)."""
    if isinstance(prompts, str):
        return [prompts] * batch_size
    prompts = list(prompts)
    if len(prompts) != batch_size:
        raise PreciseInvError(f"{len(prompts)} {what} for {batch_size} image(s): give one per image, or one string "
                              "for all")
    return prompts


class InversionEngine:
    def __init__(self, model: DiffusionModel, method, num_steps: int = 2, timestep_spacing: str | None = None,
                 timesteps: list | None = None, guidance_scale: float = 1.0,
                 metrics: ImageMetrics | None = None, sampler: str | None = None, encoder=None):
        from preciseinv.encoders import PosteriorMean

        self.model, self.method = model, method
        self.encoder = encoder or PosteriorMean()  # images -> x0 (posterior mean, or decoder inversion)
        self.encoding_stats: dict[str, torch.Tensor] = {}  # the last batch's, per sample
        self._sampler_args = (num_steps, timestep_spacing, timesteps, sampler)
        # flow models whose schedule shifts with the image size (FLUX, SD3.5) get one sampler per size
        self._per_size = timesteps is None and bool(model.scheduler_config.get("use_dynamic_shifting"))
        self._samplers: dict = {}
        self.use_size((model.resolution, model.resolution))
        self.guidance_scale = guidance_scale
        self.metrics = metrics
        # what the solver loops run at their sync points: the Lightning layer adds its stop check, telemetry
        # subscribes to on_sync (preciseinv.solvers.LoopHooks)
        self.hooks = LoopHooks()
        # the config that rebuilds this engine (preciseinv.builder.CONFIG_KEYS), which latent files store
        self.config: dict | None = None

    def use_size(self, size) -> None:
        """Select the sampler for images of pixel size (H, W); ``self.sampler`` is then that one."""
        key = (int(size[0]), int(size[1])) if self._per_size else None
        if key not in self._samplers:
            self._samplers[key] = self.model.sampler(*self._sampler_args, size=key)
        self.sampler = self._samplers[key]

    def use_latent_size(self, latent: torch.Tensor) -> None:
        self.use_size([n * self.model.vae_scale for n in latent.shape[-2:]])

    def condition(self, prompts: list[str] | None, batch_size: int, negative_prompts: list[str] | None = None) -> Any:
        prompts = check_prompts(prompts, batch_size) if prompts is not None else [""] * batch_size
        return self.model.condition(prompts, negative_prompts, self.guidance_scale)

    def invert(self, images: torch.Tensor, prompts: list[str] | None = None,
               cond: Any = None) -> tuple[torch.Tensor, InversionResult]:
        """(x0, result) for images (B, 3, H, W) in [-1, 1]; ``result.latent`` is x*_T. ``cond``: the prompts'
        conditioning when the caller already has it."""
        images = images.to(self.model.device)
        self.use_size(images.shape[-2:])
        encoding = self.encoder(self.model, images, self.hooks)
        x0, self.encoding_stats = encoding.x0.detach().float(), encoding.stats  # (B, C, h, w)
        cond = self.condition(prompts, images.shape[0]) if cond is None else cond
        result = self.method.invert(self.model.predict, self.sampler, x0, cond, self.hooks)
        result.x0 = x0  # kept in latent files: with the states, what a learned start trains on
        result.retried_fp32 = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
        device_type = x0.device.type
        if torch.is_autocast_enabled(device_type):
            bad = (~result.finite()).nonzero().squeeze(1)
            if bad.numel():  # half precision overflowed for these samples: redo them in fp32
                with torch.autocast(device_type, enabled=False):
                    retry = self.method.invert(self.model.predict, self.sampler, x0[bad], select(cond, bad),
                                               self.hooks)
                result.replace(bad, retry)
                result.retried_fp32[bad] = True
        return x0, result

    def _sample(self, latent: torch.Tensor, cond, noises, companion=None) -> torch.Tensor:
        own = getattr(self.method, "sample", None)  # a method that reconstructs its own way (ceiling, EDICT, ...)
        if own is not None:
            companion = None if companion is None else companion.to(latent.device).float()
            return own(self.model.predict, self.sampler, latent, cond, noises, companion)
        if self.sampler.injects_noise:
            if noises is None or any(z is None for z in noises[1:]):
                raise PreciseInvError(f"sampler={self.sampler.name} needs the inversion's noise maps to reconstruct "
                                      "(API: noises=inversion.result.noises; a latent file carries them)")
            noises = [None if z is None else z.to(latent.device) for z in noises]
        return self.sampler.sample(self.model.predict, latent, cond, noises)

    @torch.no_grad()
    def reconstruct(self, latent: torch.Tensor, prompts: list[str] | None = None,
                    noises: list[torch.Tensor | None] | None = None,
                    companion: torch.Tensor | None = None) -> torch.Tensor:
        """Run the sampler from x*_T (replaying ``noises`` for lcm/ddpm; EDICT, BDIA and BELM also need their
        ``companion`` state) and decode: (B, 3, H, W) in [-1, 1]."""
        latent = latent.to(self.model.device).float()
        self.use_latent_size(latent)
        cond = self.condition(prompts, latent.shape[0])
        return self.model.decode(self._sample(latent, cond, noises, companion))

    @torch.no_grad()
    def edit(self, latent: torch.Tensor, target_prompts: list[str], source_prompts: list[str],
             guidance_scale: float = 7.5, noises: list[torch.Tensor | None] | None = None,
             companion: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt editing (paper Sec. 3.4): regenerate x*_T with the target prompt under classifier-free guidance
        whose negative prompt is the source prompt. (B, 3, H, W) in [-1, 1]."""
        latent = latent.to(self.model.device).float()
        self.use_latent_size(latent)
        target_prompts = check_prompts(target_prompts, latent.shape[0], "target prompts")
        source_prompts = check_prompts(source_prompts, latent.shape[0], "source prompts")
        cond = self.model.condition(target_prompts, source_prompts, guidance_scale)
        return self.model.decode(self._sample(latent, cond, noises, companion))

    def run(self, images: torch.Tensor, prompts: list[str] | None = None) -> BatchOutput:
        start = time.perf_counter()
        images = images.to(self.model.device).float()
        if images.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(images.device)
        cond = self.condition(prompts, images.shape[0])  # encoded once for inversion and reconstruction
        x0, result = self.invert(images, prompts, cond)
        with torch.no_grad():
            x0_hat = self._sample(result.latent, cond, result.noises, result.companion)
            recon = self.model.decode(x0_hat)
        values = self.metrics(recon, images) if self.metrics is not None else {}
        values.update(self.encoding_stats)  # decoder inversion: round-trip and D(z*) PSNR, iterations, cost
        # the inversion's own error, before any VAE: what eta bounds
        values["latent_mse"] = (x0_hat - x0).pow(2).flatten(1).mean(1)
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)
        seconds = (time.perf_counter() - start) / images.shape[0]
        metrics = {k: (v.tolist() if v is not None else None) for k, v in values.items()}
        return BatchOutput(result.latent.detach(), recon, images, metrics, result, seconds,
                           peak_memory_mb=peak_memory_mb(images.device))

    def metadata(self) -> dict:
        """What a latent file records so that the reconstruction can be reproduced from it alone."""
        return {
            "model": self.model.describe(),
            "scheduler": self.model.scheduler_config,
            "schedule": self.sampler.schedule.to_dict(),
            "sampler": self.sampler.name,
            "num_steps": self.sampler.num_steps,
            "guidance_scale": self.guidance_scale,
            "encoder": self.encoder.describe(),  # which x0 the inversion started from
            **self.method.describe(),
            **({"config": self.config} if self.config else {}),
        }
