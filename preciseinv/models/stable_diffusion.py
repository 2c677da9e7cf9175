"""Stable Diffusion 1.x / 2.x (one CLIP text encoder) and SDXL (two, plus pooled embeddings and time ids).

Both work in VAE latent space with a ``UNet2DConditionModel``. Conditioning is a dict ``{"cond": {...}}``, plus
``{"uncond": {...}, "scale": s}`` for classifier-free guidance (the negative prompt as the unconditional branch).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from preciseinv.models.base import DiffusionModel, timesteps_like


class LatentModel(DiffusionModel):
    """The VAE half: encode with the posterior mean and the scaling (and shift) factor, decode back."""

    def __init__(self, source, modules, scheduler_config, resolution):
        super().__init__(source, modules, scheduler_config, resolution)
        vae = modules["vae"]
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        # SDXL's VAE overflows in fp16 (NaN / black images): keep it in fp32 whatever the rest runs in
        self.vae_upcast = bool(getattr(vae.config, "force_upcast", False))
        if self.vae_upcast and vae.dtype != torch.float32:
            vae.to(torch.float32)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "LatentModel":
        super().to(device, dtype)
        if self.vae_upcast and dtype not in (None, torch.float32):
            self.modules["vae"].to(torch.float32)
        return self

    @property
    def vae_scale(self) -> int:
        """Pixels per latent pixel (8 for the Stable Diffusion and FLUX VAEs)."""
        return 2 ** (len(self.modules["vae"].config.block_out_channels) - 1)

    vae_batch = 8  # images per VAE call: its activations at full resolution, not the solver's batch, bound memory

    def _vae(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``fn`` (an encode or a decode) over ``x`` (B, ...), ``vae_batch`` samples at a time, in the VAE's dtype
        (fp32 outside autocast where the VAE must be upcast)."""
        vae = self.modules["vae"]
        fp32 = self.vae_upcast or vae.dtype == torch.float32
        with torch.autocast(x.device.type, enabled=False) if fp32 else contextlib.nullcontext():
            return torch.cat([fn(chunk) for chunk in x.to(torch.float32 if fp32 else vae.dtype).split(self.vae_batch)])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        latent = self._vae(lambda x: self.modules["vae"].encode(x).latent_dist.mean, images)  # (B, 4, H/8, W/8)
        return (latent.float() - self.shift_factor) * self.scaling_factor

    def decode(self, x0: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """x0 -> images (B, 3, H, W); ``clamp=False`` keeps the decoder's raw output (differentiable everywhere)."""
        latent = x0.float() / self.scaling_factor + self.shift_factor
        image = self._vae(lambda z: self.modules["vae"].decode(z).sample, latent).float()
        return image.clamp(-1, 1) if clamp else image


def _tokens(tokenizer, prompts: list[str], device) -> torch.Tensor:
    return tokenizer(list(prompts), padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                     return_tensors="pt").input_ids.to(device)


def guidance_scale_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the guidance scale (B,) -> (B, dim), as LCM-distilled UNets expect it."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=w.device, dtype=torch.float32)
                      * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    angles = (w.float() * 1000.0)[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


class StableDiffusionModel(LatentModel):
    family = "stable_diffusion"
    denoiser_class = "UNet2DConditionModel"
    text_encoders = (("text_encoder", "tokenizer", "CLIPTextModel"),)

    @classmethod
    def encoders_for(cls, index: dict) -> list[tuple[str, str, str]]:
        """(encoder folder, tokenizer folder, transformers class) to load, given the model_index.json."""
        return list(cls.text_encoders)

    def __init__(self, source, modules, scheduler_config, resolution, tokenizers: dict):
        super().__init__(source, modules, scheduler_config, resolution)
        self.tokenizers = tokenizers

    @classmethod
    def from_pretrained(cls, path: str, source: str, **load_kwargs) -> "StableDiffusionModel":
        import diffusers
        import transformers

        from preciseinv.models.loading import read_index, scheduler_config

        hub = {k: v for k, v in load_kwargs.items() if k in ("revision", "local_files_only")}
        denoiser = getattr(diffusers, cls.denoiser_class)
        modules = {cls.denoiser_name: denoiser.from_pretrained(path, subfolder=cls.denoiser_name, **load_kwargs),
                   "vae": diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae", **load_kwargs)}
        tokenizers = {}
        for enc_name, tok_name, enc_cls in cls.encoders_for(read_index(path, **hub)):
            modules[enc_name] = getattr(transformers, enc_cls).from_pretrained(
                path, subfolder=enc_name, use_safetensors=load_kwargs.get("use_safetensors"),
                torch_dtype=load_kwargs.get("torch_dtype"), **hub)
            tok_cls = transformers.AutoTokenizer if enc_cls == "T5EncoderModel" else transformers.CLIPTokenizer
            tokenizers[tok_name] = tok_cls.from_pretrained(path, subfolder=tok_name, **hub)
        vae_scale = 2 ** (len(modules["vae"].config.block_out_channels) - 1)
        resolution = int(modules[cls.denoiser_name].config.sample_size) * vae_scale
        return cls(source, modules, scheduler_config(path, **load_kwargs), resolution, tokenizers)

    @torch.no_grad()
    def _embed(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.modules["text_encoder"]
        return {"text": enc(_tokens(self.tokenizers["tokenizer"], prompts, enc.device))[0]}  # (B, 77, D)

    # LCM UNets (time_cond_proj_dim) take the guidance scale as an embedding; diffusers' LCM pipeline default
    guidance_embedding = 8.5

    def _unet_kwargs(self, cond: dict[str, torch.Tensor], dtype, x: torch.Tensor | None = None) -> dict:
        """The network's conditioning arguments for the state ``x`` (B, C, h, w) (SDXL reads its size)."""
        kwargs = {"encoder_hidden_states": cond["text"].to(dtype)}
        if "w_embedding" in cond:
            kwargs["timestep_cond"] = cond["w_embedding"].to(dtype)
        return kwargs

    def _with_guidance_embedding(self, embeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dim = getattr(self.modules[self.denoiser_name].config, "time_cond_proj_dim", None)
        if dim:
            batch = next(iter(embeds.values())).shape[0]
            w = torch.full((batch,), self.guidance_embedding - 1.0, device=self.device)
            embeds["w_embedding"] = guidance_scale_embedding(w, dim)
        return embeds

    def condition(self, prompts, negative_prompts=None, guidance_scale: float = 1.0) -> dict[str, Any]:
        cond: dict[str, Any] = {"cond": self._with_guidance_embedding(self._embed(prompts))}
        if guidance_scale > 1.0:  # classifier-free guidance, negative prompt as the unconditional branch
            cond["uncond"] = self._with_guidance_embedding(self._embed(negative_prompts or [""] * len(prompts)))
            cond["scale"] = float(guidance_scale)
        return cond

    def predict(self, x: torch.Tensor, timestep: int, cond: dict[str, Any]) -> torch.Tensor:
        unet = self.modules["unet"]
        x = x.to(unet.dtype)
        if "uncond" not in cond:
            return unet(x, timesteps_like(timestep, x), **self._unet_kwargs(cond["cond"], unet.dtype, x)).sample
        both = {k: torch.cat([cond["uncond"][k], cond["cond"][k]]) for k in cond["cond"]}  # (2B, ...)
        x2 = torch.cat([x, x])  # (2B, C, h, w)
        uncond, cond_out = unet(x2, timesteps_like(timestep, x2), **self._unet_kwargs(both, unet.dtype, x2)).sample.chunk(2)
        return uncond + cond["scale"] * (cond_out - uncond)


class StableDiffusionXLModel(StableDiffusionModel):
    """SDXL: penultimate hidden states of two CLIP encoders concatenated, pooled embeddings, size/crop time ids."""

    family = "sdxl"
    text_encoders = (("text_encoder", "tokenizer", "CLIPTextModel"),
                     ("text_encoder_2", "tokenizer_2", "CLIPTextModelWithProjection"))

    @torch.no_grad()
    def _embed(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        enc1, enc2 = self.modules["text_encoder"], self.modules["text_encoder_2"]
        out1 = enc1(_tokens(self.tokenizers["tokenizer"], prompts, enc1.device), output_hidden_states=True)
        out2 = enc2(_tokens(self.tokenizers["tokenizer_2"], prompts, enc2.device), output_hidden_states=True)
        text = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)  # (B, 77, D1 + D2)
        return {"text": text, "pooled": out2.text_embeds}

    def time_ids(self, x: torch.Tensor, dtype) -> torch.Tensor:
        """(B, 6) size conditioning for states ``x`` (B, C, h, w), as the pipeline's defaults give it: original size
        = target size = the image's (H, W), crop top-left (0, 0); built once per size and device."""
        H, W = (n * self.vae_scale for n in x.shape[-2:])
        key = (H, W, x.device, dtype)
        cache = self.__dict__.setdefault("_time_ids", {})
        if key not in cache:
            cache[key] = torch.tensor([[H, W, 0, 0, H, W]], device=x.device, dtype=dtype)
        return cache[key].expand(x.shape[0], -1)

    def _unet_kwargs(self, cond, dtype, x: torch.Tensor | None = None) -> dict:
        return {"encoder_hidden_states": cond["text"].to(dtype),
                "added_cond_kwargs": {"text_embeds": cond["pooled"].to(dtype), "time_ids": self.time_ids(x, dtype)}}
