"""Speed of the engine: seconds per image-iteration (denoiser forward + backward + AdamW update, batched, through
the same SolverLoop and NoiseSubproblem as fit) and
end-to-end seconds per image, printed as a Markdown table for docs/benchmarks.md.

    python benchmarks/speed.py --model mini --batch 1 4 16
    python benchmarks/speed.py --model sd15-random --batch 1 8 32 --precision bf16 --device cuda --out benchmarks/results.jsonl
    python benchmarks/speed.py --model /path/to/diffusers/dir --batch 1 4

``sd15-random``, ``sdxl-random``, ``sd3-random`` are the denoisers of Stable Diffusion 1.5 (512 px), SDXL-base
(1024 px) and SD3-medium (1024 px), built from their standard configs with random weights and fixed random text
embeddings: their network cost with no download. ``--out`` appends one JSON object per measurement (date, device,
model, resolution, batch, precision, compile, solver, ms_per_image_iteration, images_per_second, peak_memory_mb).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from functools import partial

from preciseinv.accel.settings import accelerate, accelerate_module, autocast, configure_backends
from preciseinv.engine import peak_memory_mb
from preciseinv.methods import NoiseSubproblem
from preciseinv.samplers import DDIMSampler, build_schedule
from preciseinv.solvers import AdamW, FixedPoint, Hybrid, SolverLoop

# the per-iteration work of each kind of solver: AdamW (the paper's, forward + backward), the plain fixed-point
# iteration (forward only), and the default hybrid (configs/solver/hybrid.yaml's settings, its class defaults) in
# each of its phases: `hybrid` stays in Anderson here (forward only, a least-squares solve over its history; the
# timing loop never syncs, so no sample switches), `hybrid_fixed_point` is its heavy-ball fixed-point step (forward
# only; most of its iterations), `hybrid_lbfgs` its gradient phase (forward + backward, and a two-loop recursion
# over 64 secant pairs), `hybrid_adam` an Adam gradient phase for comparison, each with the hybrid's per-sample
# bookkeeping
SOLVERS = {"adamw": partial(AdamW, lr=0.1), "fixed_point": FixedPoint, "hybrid": partial(Hybrid, lr=0.1),
           "hybrid_fixed_point": partial(Hybrid, lr=0.1, phases=("fixed_point",)),
           "hybrid_lbfgs": partial(Hybrid, lr=0.1, phases=("lbfgs",)),
           "hybrid_adam": partial(Hybrid, lr=0.1, phases=("adam",))}


SD_SCHEDULE = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1,
                   set_alpha_to_one=False)


class RandomSD15:
    """Just enough of an adapter: SD1.5's UNet shape, random weights, conditioning on a fixed embedding."""

    name, resolution = "sd15", 512

    def __init__(self, device, dtype):
        from diffusers import UNet2DConditionModel

        self.net = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
        self.setup(device, dtype, (4, 64, 64))
        self.text = torch.randn(1, 77, 768, device=device, dtype=dtype)

    def setup(self, device, dtype, latent_shape):
        self.net = self.net.to(device, dtype).eval().requires_grad_(False)
        self.latent_shape, self.dtype = latent_shape, dtype

    def sampler(self):
        from diffusers import DDIMScheduler

        return DDIMSampler(build_schedule(DDIMScheduler(**SD_SCHEDULE).config, 2))

    def condition(self, batch: int):
        return self.text.expand(batch, -1, -1)  # (B, 77, 768)

    def predict(self, x, t, cond):
        return self.net(x.to(self.dtype), t, encoder_hidden_states=cond).sample


class RandomSDXL(RandomSD15):
    """SDXL-base's UNet (2.6 B parameters) at 1024 px (128x128 latents), random weights: two text encoders'
    2048-wide hidden states, pooled embeddings and size/crop time ids, fixed."""

    name, resolution = "sdxl", 1024

    def __init__(self, device, dtype):
        from diffusers import UNet2DConditionModel

        self.net = UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
        self.setup(device, dtype, (4, 128, 128))
        self.text = torch.randn(1, 77, 2048, device=device, dtype=dtype)
        self.pooled = torch.randn(1, 1280, device=device, dtype=dtype)
        self.time_ids = torch.tensor([[1024, 1024, 0, 0, 1024, 1024]], device=device, dtype=dtype)

    def condition(self, batch: int):
        return {"text": self.text.expand(batch, -1, -1), "pooled": self.pooled.expand(batch, -1),
                "time_ids": self.time_ids.expand(batch, -1)}

    def predict(self, x, t, cond):
        return self.net(x.to(self.dtype), t, encoder_hidden_states=cond["text"],
                        added_cond_kwargs={"text_embeds": cond["pooled"], "time_ids": cond["time_ids"]}).sample


class RandomSD3(RandomSD15):
    """SD3-medium's transformer (2 B parameters) at 1024 px (16x128x128 latents), random weights, with 333 tokens
    of joint text (77 CLIP + 256 T5) and pooled embeddings, fixed; the flow-matching Euler sampler (shift 3)."""

    name, resolution = "sd3", 1024

    def __init__(self, device, dtype):
        from diffusers import SD3Transformer2DModel

        self.net = SD3Transformer2DModel(sample_size=128, patch_size=2, in_channels=16, num_layers=24,
                                         attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                                         caption_projection_dim=1536, pooled_projection_dim=2048, out_channels=16,
                                         pos_embed_max_size=192)
        self.setup(device, dtype, (16, 128, 128))
        self.text = torch.randn(1, 333, 4096, device=device, dtype=dtype)
        self.pooled = torch.randn(1, 2048, device=device, dtype=dtype)

    def sampler(self):
        from diffusers import FlowMatchEulerDiscreteScheduler

        from preciseinv.samplers import EulerFlowSampler, build_flow_schedule

        return EulerFlowSampler(build_flow_schedule(FlowMatchEulerDiscreteScheduler(shift=3.0).config, 2))

    def condition(self, batch: int):
        return {"text": self.text.expand(batch, -1, -1), "pooled": self.pooled.expand(batch, -1)}

    def predict(self, x, t, cond):
        timestep = torch.full((x.shape[0],), float(t), device=x.device, dtype=self.dtype)
        return self.net(hidden_states=x.to(self.dtype), timestep=timestep, encoder_hidden_states=cond["text"],
                        pooled_projections=cond["pooled"]).sample


RANDOM = {"sd15-random": RandomSD15, "sdxl-random": RandomSDXL, "sd3-random": RandomSD3}


class LoadedModel:
    def __init__(self, path, device, dtype):
        from preciseinv.models import load_model

        self.name = "mini" if path == "mini" else Path(str(path)).name
        self.model = load_model(None if path == "mini" else path, device=device, dtype=dtype)
        self.resolution, self.scheduler_config = self.model.resolution, self.model.scheduler_config
        with torch.no_grad():
            x = self.model.encode(torch.zeros(1, 3, self.resolution, self.resolution, device=device))
        self.latent_shape = tuple(x.shape[1:])

    def sampler(self):
        return self.model.sampler(2)

    def condition(self, batch: int):
        return self.model.condition([""] * batch)

    def predict(self, x, t, cond):
        return self.model.predict(x, t, cond)


def build(name: str, device, dtype, compile=False, channels_last: bool = False, scope: str = "full",
          cudnn_benchmark: bool = False):
    """A random-weight denoiser (``RANDOM``; fp32 on a CPU) or a loaded model (fp32 weights), with the speed
    settings applied."""
    if name in RANDOM:
        model = RANDOM[name](device, torch.float32 if device.type == "cpu" else dtype)
        accelerate_module(model.net, compile, channels_last, scope, cudnn_benchmark)
    else:
        model = LoadedModel(name, device, "float32")
        accelerate(model.model, compile, channels_last, scope, cudnn_benchmark)
    return model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_iterations(model, batch, iters, device, precision, solver="adamw") -> tuple[float, float]:
    """(seconds per image-iteration of the solver at batch size ``batch`` after a warm-up, seconds of the warm-up:
    two iterations plus, with ``--compile``, the compilation). ``precision`` "true" runs the network in its
    weights' dtype with no autocast."""
    sampler = model.sampler()
    x0 = torch.randn(batch, *model.latent_shape, device=device)
    problem = NoiseSubproblem(sampler, model.predict, 1, x0, x0, torch.randn_like(x0), model.condition(batch),
                              solver=SOLVERS[solver])
    with autocast(device, precision):
        start = time.perf_counter()
        SolverLoop(eta=1e-30, max_iters=2, sync_every=10**9).run(problem)  # warm-up; never converges: fixed work
        sync(device)
        warmup = time.perf_counter() - start
        start = time.perf_counter()
        SolverLoop(eta=1e-30, max_iters=iters, sync_every=10**9).run(problem)
        sync(device)
    return (time.perf_counter() - start) / ((iters + 1) * batch), warmup  # iters updates + 1 final evaluation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini", help=f"mini | {' | '.join(RANDOM)} | a diffusers directory")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--no-autocast", action="store_true",
                   help="run the random denoisers in --precision's dtype throughout (no autocast: GroupNorm and "
                        "softmax stay in half precision; fit's trainer.precision=bf16-true)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--solver", nargs="+", default=["adamw"], choices=list(SOLVERS))
    p.add_argument("--compile", default="false", help="false | true | a torch.compile mode")
    p.add_argument("--compile-scope", default="full", choices=["full", "regional"],
                   help="what --compile compiles: the whole denoiser, or its blocks (a shorter compile)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="cuDNN times its convolution algorithms per shape (model.cudnn_benchmark; the search is in "
                        "the warm-up)")
    p.add_argument("--no-end-to-end", action="store_true", help="skip the engine's end-to-end run (loaded models)")
    p.add_argument("--out", type=Path, default=None, help="append one JSON object per measurement (results.jsonl)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    configure_backends()
    compute = "true" if args.no_autocast else args.precision  # the autocast name (anything unknown: none)
    compile = {"false": False, "true": True}.get(args.compile.lower(), args.compile)
    model = build(args.model, device, dtype, compile, args.channels_last, args.compile_scope, args.cudnn_benchmark)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    shown = name if device.type == "cuda" else f"{platform.processor() or 'cpu'} x{torch.get_num_threads()} threads"

    def record(**row):
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as f:
                f.write(json.dumps({"date": str(date.today()), "device": name, "model": model.name,
                                    "resolution": model.resolution, "precision": args.precision, "compile": compile,
                                    "compile_scope": args.compile_scope if compile else None,
                                    "channels_last": args.channels_last, "cudnn_benchmark": args.cudnn_benchmark,
                                    "autocast": not args.no_autocast,
                                    **row}) + "\n")

    print("| model | device | precision | compile | channels_last | solver | batch | ms / image-iteration | "
          "images/s at 100 iterations | peak MB | warm-up s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for solver in args.solver:
        sizes, fitted = sorted(args.batch), 0
        while sizes:  # out of memory at a size: half of it next (down to the last size that fitted)
            batch = sizes.pop(0)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            head = (f"| {args.model} | {shown} | {args.precision}{' (no autocast)' if args.no_autocast else ''} | "
                    f"{compile}{' (regional)' if compile and args.compile_scope == 'regional' else ''}"
                    f"{' + cudnn benchmark' if args.cudnn_benchmark else ''} | "
                    f"{args.channels_last} | {solver} | {batch} |")
            try:
                sec, warmup = time_iterations(model, batch, args.iters, device, compute, solver)
            except torch.OutOfMemoryError:
                print(f"{head} out of memory | | | |", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                sizes = [batch // 2] if batch // 2 > fitted else []
                continue
            fitted = batch
            peak = peak_memory_mb(device)
            print(f"{head} {sec * 1e3:.2f} | {1 / (sec * 100):.2f} | {peak:.0f} | {warmup:.1f} |", flush=True)
            record(kind="iteration", solver=solver, batch=batch, ms_per_image_iteration=sec * 1e3,
                   images_per_second=None, peak_memory_mb=peak, warmup_seconds=round(warmup, 3))
    if isinstance(model, LoadedModel) and not args.no_end_to_end:
        from preciseinv.builder import build_engine, inverter_config

        cfg = inverter_config(model.model, solver="adamw", eta=1e-3, max_iters=200, lr=0.1, num_steps=2,
                              lpips=False)
        engine = build_engine(cfg, model.model)
        images = torch.rand(max(args.batch), 3, model.resolution, model.resolution, device=device) * 2 - 1
        with autocast(device, compute):
            out = engine.run(images)
        print(f"\nend to end (encode, invert T=2 at eta=1e-3, reconstruct, metrics), batch {images.shape[0]} of "
              f"random images: {out.seconds_per_image:.3f} s/image")
        record(kind="end_to_end", solver="adamw", batch=images.shape[0], ms_per_image_iteration=None,
               images_per_second=1 / out.seconds_per_image, peak_memory_mb=out.peak_memory_mb)


if __name__ == "__main__":
    main()
