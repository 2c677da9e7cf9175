"""Tiny random-weight diffusers models built from configs, saved with ``save_pretrained`` (no Hub access).

For tests, the notebook and anyone trying the pipeline without downloading a model; their outputs mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table, which CLIP's BPE works on."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def clip_tokenizer():
    """A byte-level CLIP tokenizer with every byte symbol in its vocabulary (nothing downloaded)."""
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    for merge in ("t h", "th e</w>", "a n", "o n"):
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[("t", "h"), ("th", "e</w>"), ("a", "n"), ("o", "n")],
                         model_max_length=77)


def _text_config(tokenizer, hidden: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, hidden_size=hidden, intermediate_size=37,
                          num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer),
                          projection_dim=hidden, max_position_embeddings=77)


def _tiny_vae(**extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4,
                         norm_num_groups=2, down_block_types=["DownEncoderBlock2D"] * 2,
                         up_block_types=["UpDecoderBlock2D"] * 2, **extra)


def _calm(unet):
    """Scale the output layer down: keeps mu well conditioned, as in a trained model."""
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    return unet


def save_tiny_sd(folder: Path, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """A Stable-Diffusion-1.x-shaped pipeline (16 px latents, 32 px images) saved as a diffusers directory.

    ``prediction_type="v_prediction"`` gives the SD2.x (768-v) flavour."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        cross_attention_dim=32, norm_num_groups=2, attention_head_dim=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    _calm(unet)
    vae = _tiny_vae()
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(_text_config(tokenizer)).eval()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    out = folder / f"tiny-sd-{prediction_type}"
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def save_tiny_sdxl(folder: Path, seed: int = 0) -> Path:
    """An SDXL-shaped pipeline: two CLIP encoders (the second with projection), text_time added conditioning,
    a VAE with ``force_upcast``, SDXL's Euler scheduler config."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = _calm(UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        cross_attention_dim=64, norm_num_groups=2, attention_head_dim=2, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    ))
    tokenizer = clip_tokenizer()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(
        unet=unet, vae=_tiny_vae(force_upcast=True), scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tokenizer,
        text_encoder=CLIPTextModel(_text_config(tokenizer)).eval(),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer)).eval())
    out = folder / "tiny-sdxl"
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def save_tiny_pixel(folder: Path, seed: int = 0, clip_sample: bool = False) -> Path:
    """A tiny pixel-space DDPMPipeline (16 px)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                       block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    out = folder / "tiny-pixel"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(clip_sample=clip_sample)).save_pretrained(out, safe_serialization=True)
    return out


def write_images(folder: Path, names: list[str], size: int = 48, seed: int = 0) -> list[Path]:
    """Smooth random RGB images (PNG) for end-to-end runs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        base = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        paths.append(path)
    return paths
