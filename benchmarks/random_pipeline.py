"""A full-size Stable Diffusion 1.5-shaped pipeline with random weights, saved as a diffusers directory, so that
``python -m preciseinv.fit`` (and ``benchmarks/throughput.py``) can run end to end at SD1.5's real cost on a machine
with no download: SD1.5's UNet (860 M parameters), VAE (84 M, 512 px images) and CLIP ViT-L text encoder (123 M
with CLIP's vocabulary size; the local byte-level tokenizer of ``preciseinv.testing.tiny`` uses its first ids), the DDIM
schedule of SD.

    python benchmarks/random_pipeline.py /tmp/sd15-random            # on the GPU when there is one (faster init)
    python benchmarks/throughput.py --model sd15 --images 32 160 --set model.path=/tmp/sd15-random

The weights are random (the UNet's output layer scaled by 0.1, as in the tiny test models, so that one denoising
step stays well conditioned): the run's cost per network call, batch size, memory and I/O are SD1.5's, its
iteration counts and PSNR are not a trained model's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def save_random_sd15(out: Path, device: str = "cpu", seed: int = 0) -> Path:
    """Write the pipeline to ``out`` (fp16 safetensors, about 2.1 GB) and return it."""
    random_sd15(device, seed).to(torch.float16).save_pretrained(out, safe_serialization=True)
    return out


def random_sd15(device: str = "cpu", seed: int = 0):
    """The pipeline, its parameters made on ``device`` ("meta": shapes only)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from preciseinv.testing.tiny import _calm, clip_tokenizer

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    with torch.device(device):  # parameters initialised where they are made: seconds on a GPU, a minute on a CPU
        unet = _calm(UNet2DConditionModel(sample_size=64, cross_attention_dim=768))  # SD1.5's config: the defaults
        vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
                            down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                            sample_size=512)
        text = CLIPTextModel(CLIPTextConfig(
            hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
            projection_dim=768, max_position_embeddings=77, vocab_size=49408,  # CLIP's (the local one uses ~520 ids)
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id)).eval()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    start = time.perf_counter()
    save_random_sd15(args.out, args.device)
    print(f"random SD1.5-shaped pipeline in {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
