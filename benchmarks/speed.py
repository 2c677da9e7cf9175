"""Speed of the engine: seconds per image-iteration (denoiser forward + backward + AdamW update, batched, through
the same SolverLoop and NoiseSubproblem as fit) and
end-to-end seconds per image, printed as a Markdown table for docs/benchmarks.md.

    python benchmarks/speed.py --model mini --batch 1 4 16
    python benchmarks/speed.py --model sd15-random --batch 1 8 32 --precision bf16 --device cuda
    python benchmarks/speed.py --model /path/to/diffusers/dir --batch 1 4

``sd15-random`` is a UNet of Stable Diffusion 1.5's architecture (random weights, built from the standard config)
at 512 px (64x64 latents), with a fixed random text embedding: the network cost of SD1.5 with no download.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch

from functools import partial

from preciseinv.methods import NoiseSubproblem
from preciseinv.samplers import DDIMSampler, build_schedule
from preciseinv.solvers import AdamW, SolverLoop


class RandomSD15:
    """Just enough of an adapter: SD1.5's UNet shape, random weights, conditioning on a fixed embedding."""

    resolution = 512

    def __init__(self, device, dtype):
        from diffusers import DDIMScheduler, UNet2DConditionModel

        self.unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768).to(device, dtype).eval()
        self.unet.requires_grad_(False)
        self.scheduler_config = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                              steps_offset=1, set_alpha_to_one=False).config
        self.text = torch.randn(1, 77, 768, device=device, dtype=dtype)
        self.latent_shape, self.dtype = (4, 64, 64), dtype

    def condition(self, batch: int):
        return self.text.expand(batch, -1, -1)  # (B, 77, 768)

    def predict(self, x, t, cond):
        return self.unet(x.to(self.dtype), t, encoder_hidden_states=cond).sample


class LoadedModel:
    def __init__(self, path, device, dtype):
        from preciseinv.models import load_model

        self.model = load_model(None if path == "mini" else path, device=device, dtype=dtype)
        self.resolution, self.scheduler_config = self.model.resolution, self.model.scheduler_config
        with torch.no_grad():
            x = self.model.encode(torch.zeros(1, 3, self.resolution, self.resolution, device=device))
        self.latent_shape = tuple(x.shape[1:])

    def condition(self, batch: int):
        return self.model.condition([""] * batch)

    def predict(self, x, t, cond):
        return self.model.predict(x, t, cond)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_iterations(model, batch, iters, device, autocast) -> float:
    """Seconds per image-iteration of the solver at batch size ``batch`` (after a warm-up)."""
    sampler = DDIMSampler(build_schedule(model.scheduler_config, 2))
    x0 = torch.randn(batch, *model.latent_shape, device=device)
    problem = NoiseSubproblem(sampler, model.predict, 1, x0, x0, torch.randn_like(x0), model.condition(batch),
                              solver=partial(AdamW, lr=0.1))
    with autocast():
        SolverLoop(eta=1e-30, max_iters=2, sync_every=10**9).run(problem)  # warm-up; never converges: fixed work
        sync(device)
        start = time.perf_counter()
        SolverLoop(eta=1e-30, max_iters=iters, sync_every=10**9).run(problem)
        sync(device)
    return (time.perf_counter() - start) / ((iters + 1) * batch)  # iters updates + 1 final evaluation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini", help="mini | sd15-random | a diffusers directory")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype != torch.float32 else contextlib.nullcontext
    model = RandomSD15(device, torch.float32 if device.type == "cpu" else dtype) if args.model == "sd15-random" \
        else LoadedModel(args.model, device, "float32")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'} x{torch.get_num_threads()} threads"
    print("| model | device | precision | batch | ms / image-iteration | images/s at 100 iterations |")
    print("|---|---|---|---|---|---|")
    for batch in args.batch:
        try:
            sec = time_iterations(model, batch, args.iters, device, autocast)
        except torch.OutOfMemoryError:
            print(f"| {args.model} | {name} | {args.precision} | {batch} | out of memory | |")
            break
        print(f"| {args.model} | {name} | {args.precision} | {batch} | {sec * 1e3:.2f} | {1 / (sec * 100):.2f} |",
              flush=True)
    if args.model != "sd15-random":
        from preciseinv.engine import InversionEngine
        from preciseinv.methods import PreciseInv
        from preciseinv.metrics import ImageMetrics

        engine = InversionEngine(model.model, PreciseInv(eta=1e-3, max_iters=200, solver=partial(AdamW, lr=0.1)), 2,
                                 metrics=ImageMetrics(False))
        images = torch.rand(max(args.batch), 3, model.resolution, model.resolution, device=device) * 2 - 1
        with autocast():
            out = engine.run(images)
        print(f"\nend to end (encode, invert T=2 at eta=1e-3, reconstruct, metrics), batch {images.shape[0]} of "
              f"random images: {out.seconds_per_image:.3f} s/image")


if __name__ == "__main__":
    main()
