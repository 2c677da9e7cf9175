"""FLUX.1 ([dev], [schnell]): rectified flow (Euler sampler) with ``FluxTransformer2DModel`` on 2x2-packed
latents, as diffusers' ``FluxPipeline`` runs it.

- The state the sampler and the solvers work in is the VAE latent (B, C, h, w), as for every latent model; the
  adapter packs it into (B, h/2 * w/2, 4C) tokens for the transformer and unpacks the velocity, exactly as the
  pipeline's ``_pack_latents`` / ``_unpack_latents`` (so latent files, interpolation and the metrics see images).
- Rotary image ids (row, column) for any latent size, text ids zeros, the timestep as sigma (t / 1000).
- Conditioning: CLIP's pooled output and the T5 sequence (``t5_length`` tokens, the pipeline's 512).
- [dev] is guidance-distilled: the guidance scale is an input of the network (``guidance_embeds``); inversion,
  reconstruction and edits all feed it ``model.guidance_embedding`` (3.5, the pipeline's default). An edit's
  ``guidance_scale`` > 1 with a negative (the source) prompt is true classifier-free guidance, a second pass, as
  ``FluxPipeline(true_cfg_scale=..., negative_prompt=...)`` does it, for [dev] and [schnell] alike, so an edit whose
  target is its source prompt reproduces the reconstruction, as in every other family.
- The flow-matching scheduler shifts its sigmas by the image's token count (``use_dynamic_shifting``): mu from
  ``calculate_shift(h/2 * w/2)`` and the sigmas ``linspace(1, 1/T, T)``, as the pipeline computes them.
"""

from __future__ import annotations

import numpy as np
import torch

from preciseinv.models.base import timesteps_like
from preciseinv.models.stable_diffusion import LatentModel, _tokens


def pack(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 * w/2, 4C): 2x2 patches as tokens (FluxPipeline._pack_latents)."""
    B, C, h, w = x.shape
    return x.view(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, (h // 2) * (w // 2), C * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h/2 * w/2, 4C) -> (B, C, h, w) (FluxPipeline._unpack_latents, in latent units)."""
    B, _, D = tokens.shape
    return tokens.view(B, h // 2, w // 2, D // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(B, D // 4, h, w)


def image_ids(h2: int, w2: int, device, dtype) -> torch.Tensor:
    """(h2 * w2, 3) rotary ids: (0, row, column) of each packed token (FluxPipeline._prepare_latent_image_ids)."""
    ids = torch.zeros(h2, w2, 3, device=device, dtype=dtype)
    ids[..., 1] += torch.arange(h2, device=device, dtype=dtype)[:, None]
    ids[..., 2] += torch.arange(w2, device=device, dtype=dtype)[None, :]
    return ids.reshape(h2 * w2, 3)


class FluxModel(LatentModel):
    family = "flux"
    denoiser_name = "transformer"
    t5_length = 512  # FluxPipeline's max_sequence_length
    flow_max_shift = 1.15
    guidance_embedding = 3.5  # FluxPipeline's default guidance_scale ([dev])

    def __init__(self, source, modules, scheduler_config, resolution, tokenizers: dict):
        super().__init__(source, modules, scheduler_config, resolution)
        self.tokenizers = tokenizers
        self._ids: dict = {}  # (h2, w2, device) -> image ids per latent size; ("text", L, device) -> text ids

    @classmethod
    def from_pretrained(cls, path: str, source: str, **load_kwargs) -> "FluxModel":
        import diffusers
        import transformers

        from preciseinv.models.loading import scheduler_config

        hub = {k: v for k, v in load_kwargs.items() if k in ("revision", "local_files_only")}
        text_kwargs = {"use_safetensors": load_kwargs.get("use_safetensors"),
                       "torch_dtype": load_kwargs.get("torch_dtype"), **hub}
        modules = {
            "transformer": diffusers.FluxTransformer2DModel.from_pretrained(path, subfolder="transformer",
                                                                            **load_kwargs),
            "vae": diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae", **load_kwargs),
            "text_encoder": transformers.CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **text_kwargs),
            "text_encoder_2": transformers.T5EncoderModel.from_pretrained(path, subfolder="text_encoder_2",
                                                                          **text_kwargs),
        }
        tokenizers = {"tokenizer": transformers.CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **hub),
                      "tokenizer_2": transformers.AutoTokenizer.from_pretrained(path, subfolder="tokenizer_2", **hub)}
        vae_scale = 2 ** (len(modules["vae"].config.block_out_channels) - 1)
        return cls(source, modules, scheduler_config(path, **load_kwargs), 128 * vae_scale, tokenizers)

    # --- the flow schedule's resolution-dependent shift ---------------------------------------------------
    def image_seq_len(self, size: tuple[int, int]) -> int:
        h, w = (s // self.vae_scale for s in size)
        return (h // 2) * (w // 2)

    def flow_sigmas(self, num_steps: int):
        if self.scheduler_config.get("use_flow_sigmas"):
            return None
        return np.linspace(1.0, 1 / num_steps, num_steps)

    # --- conditioning ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _embed(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        clip, t5 = self.modules["text_encoder"], self.modules["text_encoder_2"]
        pooled = clip(_tokens(self.tokenizers["tokenizer"], prompts, clip.device), output_hidden_states=False)
        ids = self.tokenizers["tokenizer_2"](list(prompts), padding="max_length", truncation=True,
                                             max_length=self.t5_length, return_tensors="pt").input_ids
        return {"text": t5(ids.to(t5.device))[0], "pooled": pooled.pooler_output}  # (B, L, D), (B, P)

    def condition(self, prompts: list[str], negative_prompts: list[str] | None = None,
                  guidance_scale: float = 1.0):
        """{"cond": embeddings, "guidance": the embedded guidance}, plus "uncond" and "scale" for true CFG."""
        cond = {"cond": self._embed(list(prompts)), "guidance": float(self.guidance_embedding)}
        if guidance_scale > 1.0:
            cond["uncond"] = self._embed(list(negative_prompts or [""] * len(prompts)))
            cond["scale"] = float(guidance_scale)
        return cond

    # --- the network ----------------------------------------------------------------------------------
    def predict(self, x: torch.Tensor, timestep: float, cond) -> torch.Tensor:
        transformer = self.modules["transformer"]
        dtype = transformer.dtype
        B, _, h, w = x.shape
        key = (h // 2, w // 2, x.device)
        if key not in self._ids:  # fp32: exact positions for any size (the rotary embedding computes in fp32)
            self._ids[key] = image_ids(h // 2, w // 2, x.device, torch.float32)
        guidance = (timesteps_like(cond.get("guidance", self.guidance_embedding), x, torch.float32)
                    if transformer.config.guidance_embeds else None)
        t = timesteps_like(float(timestep), x, dtype) / 1000  # t rounded in the network's dtype, then /1000: as the pipeline

        def run(c):
            text_key = ("text", c["text"].shape[1], x.device)
            if text_key not in self._ids:  # text ids are zeros, one row per token
                self._ids[text_key] = x.new_zeros(c["text"].shape[1], 3, dtype=torch.float32)
            return unpack(transformer(hidden_states=pack(x.to(dtype)), timestep=t, guidance=guidance,
                                      pooled_projections=c["pooled"].to(dtype), encoder_hidden_states=c["text"].to(dtype),
                                      txt_ids=self._ids[text_key], img_ids=self._ids[key]).sample, h, w)

        out = run(cond["cond"])
        if "uncond" not in cond:
            return out
        uncond = run(cond["uncond"])
        return uncond + cond["scale"] * (out - uncond)
