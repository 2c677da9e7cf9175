"""Pixel-space models: a diffusers ``UNet2DModel`` (DDPMPipeline / DDIMPipeline), unconditional."""

from __future__ import annotations

import warnings

import torch

from preciseinv.errors import PreciseInvWarning
from preciseinv.models.base import DiffusionModel, timesteps_like


class PixelModel(DiffusionModel):
    family = "pixel"

    @classmethod
    def from_pretrained(cls, path: str, source: str, **load_kwargs) -> "PixelModel":
        from diffusers import UNet2DModel

        unet = UNet2DModel.from_pretrained(path, subfolder="unet", **load_kwargs)
        from preciseinv.models.loading import scheduler_config

        return cls(source, {"unet": unet}, scheduler_config(path, **load_kwargs), int(unet.config.sample_size))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.float()  # the state space is the image itself

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        return x0.float().clamp(-1, 1)

    def condition(self, prompts, negative_prompts=None, guidance_scale: float = 1.0):
        if any(prompts):
            warnings.warn("this pixel-space model is unconditional: prompts are ignored", PreciseInvWarning,
                          stacklevel=2)
        return None

    def predict(self, x: torch.Tensor, timestep: int, cond=None) -> torch.Tensor:
        unet = self.modules["unet"]
        return unet(x.to(self.dtype), timesteps_like(timestep, x)).sample
