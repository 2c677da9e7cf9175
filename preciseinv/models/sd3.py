"""Stable Diffusion 3: rectified flow (Euler sampler), ``SD3Transformer2DModel``, three text encoders.

Conditioning as diffusers' SD3 pipeline builds it: the two CLIP encoders' penultimate hidden states concatenated
(and zero-padded to the T5 width), followed by the T5 sequence; pooled = both CLIP projections. Without T5
(``text_encoder_3`` left out, as the pipeline allows) its part is zeros.
"""

from __future__ import annotations

import torch

from preciseinv.models.base import timesteps_like
from preciseinv.models.stable_diffusion import StableDiffusionModel, _tokens


class StableDiffusion3Model(StableDiffusionModel):
    family = "sd3"
    denoiser_name = "transformer"
    denoiser_class = "SD3Transformer2DModel"
    text_encoders = (("text_encoder", "tokenizer", "CLIPTextModelWithProjection"),
                     ("text_encoder_2", "tokenizer_2", "CLIPTextModelWithProjection"))
    t5_length = 256
    flow_max_shift = 1.16  # StableDiffusion3Pipeline's calculate_shift default (SD3.5's dynamic shifting)

    def image_seq_len(self, size: tuple[int, int]) -> int:
        patch = self.modules["transformer"].config.patch_size
        h, w = (s // self.vae_scale for s in size)
        return (h // patch) * (w // patch)

    @classmethod
    def encoders_for(cls, index: dict) -> list[tuple[str, str, str]]:
        t5 = [("text_encoder_3", "tokenizer_3", "T5EncoderModel")] if (index.get("text_encoder_3") or [None])[0] else []
        return list(cls.text_encoders) + t5

    @torch.no_grad()
    def _embed(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        hidden, pooled = [], []
        for enc_name, tok_name, _ in self.text_encoders:
            enc = self.modules[enc_name]
            out = enc(_tokens(self.tokenizers[tok_name], prompts, enc.device), output_hidden_states=True)
            hidden.append(out.hidden_states[-2])  # (B, 77, D_i)
            pooled.append(out.text_embeds)  # (B, P_i)
        clip = torch.cat(hidden, dim=-1)  # (B, 77, D1 + D2)
        width = self.modules["transformer"].config.joint_attention_dim
        if "text_encoder_3" in self.modules:
            t5 = self.modules["text_encoder_3"]
            ids = self.tokenizers["tokenizer_3"](list(prompts), padding="max_length", truncation=True,
                                                 max_length=self.t5_length, return_tensors="pt").input_ids
            t5_embeds = t5(ids.to(t5.device))[0]  # (B, L, width)
        else:
            t5_embeds = clip.new_zeros(len(prompts), self.t5_length, width)
        clip = torch.nn.functional.pad(clip, (0, width - clip.shape[-1]))  # (B, 77, width), as the pipeline does
        return {"text": torch.cat([clip, t5_embeds], dim=-2), "pooled": torch.cat(pooled, dim=-1)}

    def _unet_kwargs(self, cond, dtype, x=None) -> dict:
        return {"encoder_hidden_states": cond["text"].to(dtype), "pooled_projections": cond["pooled"].to(dtype)}

    def predict(self, x: torch.Tensor, timestep: float, cond) -> torch.Tensor:
        transformer = self.modules["transformer"]
        x = x.to(transformer.dtype)

        def run(inp, c):
            t = timesteps_like(float(timestep), inp, transformer.dtype)
            return transformer(hidden_states=inp, timestep=t, **self._unet_kwargs(c, transformer.dtype)).sample

        if "uncond" not in cond:
            return run(x, cond["cond"])
        both = {k: torch.cat([cond["uncond"][k], cond["cond"][k]]) for k in cond["cond"]}
        uncond, cond_out = run(torch.cat([x, x]), both).chunk(2)
        return uncond + cond["scale"] * (cond_out - uncond)

