"""Stable Diffusion 1.x / 2.x: VAE latents, one CLIP text encoder, ``UNet2DConditionModel``."""

from __future__ import annotations

from typing import Any

import torch

from preciseinv.models.base import DiffusionModel


class StableDiffusionModel(DiffusionModel):
    family = "stable_diffusion"

    def __init__(self, source, modules, scheduler_config, resolution, tokenizer):
        super().__init__(source, modules, scheduler_config, resolution)
        self.tokenizer = tokenizer
        vae = modules["vae"]
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)

    @classmethod
    def from_pretrained(cls, path: str, source: str, **load_kwargs) -> "StableDiffusionModel":
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        from preciseinv.models.loading import scheduler_config

        hub = {k: v for k, v in load_kwargs.items() if k in ("revision", "local_files_only")}
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **load_kwargs)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **load_kwargs)
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder",
                                                     use_safetensors=load_kwargs.get("use_safetensors"), **hub)
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **hub)
        vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        resolution = int(unet.config.sample_size) * vae_scale
        modules = {"unet": unet, "vae": vae, "text_encoder": text_encoder}
        return cls(source, modules, scheduler_config(path, **load_kwargs), resolution, tokenizer)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        vae = self.modules["vae"]
        latent = vae.encode(images.to(vae.dtype)).latent_dist.mean  # (B, 4, H/8, W/8), deterministic
        return ((latent.float() - self.shift_factor) * self.scaling_factor)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        vae = self.modules["vae"]
        latent = x0 / self.scaling_factor + self.shift_factor
        return vae.decode(latent.to(vae.dtype)).sample.float().clamp(-1, 1)

    @torch.no_grad()
    def _embed(self, prompts: list[str]) -> torch.Tensor:
        enc = self.modules["text_encoder"]
        ids = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                             max_length=self.tokenizer.model_max_length, return_tensors="pt").input_ids
        return enc(ids.to(enc.device))[0]  # (B, 77, D)

    def condition(self, prompts, negative_prompts=None, guidance_scale: float = 1.0) -> dict[str, Any]:
        cond: dict[str, Any] = {"text": self._embed(prompts)}
        if guidance_scale > 1.0:  # classifier-free guidance, negative prompt as the unconditional branch
            cond["uncond"] = self._embed(negative_prompts or [""] * len(prompts))
            cond["scale"] = float(guidance_scale)
        return cond

    def predict(self, x: torch.Tensor, timestep: int, cond: dict[str, Any]) -> torch.Tensor:
        unet = self.modules["unet"]
        x = x.to(unet.dtype)
        if "uncond" not in cond:
            return unet(x, timestep, encoder_hidden_states=cond["text"].to(unet.dtype)).sample
        text = torch.cat([cond["uncond"], cond["text"]]).to(unet.dtype)  # (2B, 77, D)
        uncond, cond_out = unet(torch.cat([x, x]), timestep, encoder_hidden_states=text).sample.chunk(2)
        return uncond + cond["scale"] * (cond_out - uncond)
