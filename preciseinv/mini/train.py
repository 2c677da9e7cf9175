"""Train the embedded mini model: a ~1 M-parameter pixel-space DDPM at 32x32 on scikit-image's sample images.

Recipe (rerun it to reproduce ``preciseinv/assets/mini-ddpm``)::

    python -m preciseinv.mini.train --out runs/mini-ddpm --steps 4000 --threads 1

- data: random square crops (side log-uniform between 32 px and the short side) of the ``TRAIN_IMAGES`` in
  ``images.py``, area-resized to 32x32, random horizontal flips, scaled to [-1, 1];
- objective: epsilon prediction, DDPM linear beta schedule 1e-4..0.02 over 1000 steps, uniform timesteps;
- optimiser: AdamW lr 1e-3 (linear warm-up 200 steps, cosine decay to 1e-4), weight decay 0.01, batch 64, seed 0;
- shipped weights: the EMA (decay 0.999) of the UNet, in diffusers format (safetensors), every ``--save-every`` steps.

Training resumes from ``<out>/train_state.pt`` when it exists, so a stopped run continues.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from preciseinv.mini.images import TRAIN_IMAGES, skimage_image

RESOLUTION = 32


def build_unet():
    """The mini UNet: three conv-only resolutions, 1.06 M parameters."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=RESOLUTION, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(32, 64, 64), norm_num_groups=8,
        down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
    )


def build_scheduler(clip_sample: bool = False):
    """DDPM's linear betas; ``clip_sample`` only changes sampling (x0_hat clipped to [-1, 1], as google's pixel
    DDPMs are configured), not training."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         prediction_type="epsilon", clip_sample=clip_sample)


class RandomCrops:
    """An endless source of random square crops of the training images, in [-1, 1]."""

    def __init__(self, names=TRAIN_IMAGES, seed: int = 0):
        self.images = [torch.from_numpy(skimage_image(n).copy()).permute(2, 0, 1).float() / 127.5 - 1 for n in names]
        self.gen = torch.Generator().manual_seed(seed)

    def _rand(self) -> float:
        return torch.rand((), generator=self.gen).item()

    def sample(self, batch_size: int) -> torch.Tensor:
        crops = []
        for _ in range(batch_size):
            img = self.images[int(self._rand() * len(self.images))]  # (3, H, W)
            _, h, w = img.shape
            side = int(math.exp(math.log(RESOLUTION) + self._rand() * (math.log(min(h, w)) - math.log(RESOLUTION))))
            top, left = int(self._rand() * (h - side + 1)), int(self._rand() * (w - side + 1))
            crop = img[None, :, top:top + side, left:left + side]
            crop = F.interpolate(crop, size=(RESOLUTION, RESOLUTION), mode="area")
            if self._rand() < 0.5:
                crop = crop.flip(-1)
            crops.append(crop)
        return torch.cat(crops)  # (B, 3, 32, 32)


def lr_at(step: int, total: int, peak: float, floor: float, warmup: int = 200) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def save_pipeline(ema, scheduler, out: Path) -> None:
    """Write a DDPMPipeline directory atomically (temporary name, then rename)."""
    from diffusers import DDPMPipeline

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=ema, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def train(out: Path, steps: int, batch_size: int, lr: float, seed: int, save_every: int, max_minutes: float,
          clip_sample: bool = False) -> None:
    torch.manual_seed(seed)
    unet, scheduler = build_unet(), build_scheduler(clip_sample)
    ema = build_unet().requires_grad_(False)
    ema.load_state_dict(unet.state_dict())
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    data = RandomCrops(seed=seed)
    alphas_cumprod = scheduler.alphas_cumprod  # (1000,)
    state_path, step = out / "train_state.pt", 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        unet.load_state_dict(state["unet"]), ema.load_state_dict(state["ema"]), opt.load_state_dict(state["opt"])
        data.gen.set_state(state["gen"]), torch.set_rng_state(state["rng"])
        step = state["step"]
        print(f"resumed at step {step}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    while step < steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, lr / 10)
        x0 = data.sample(batch_size)  # (B, 3, 32, 32)
        t = torch.randint(0, len(alphas_cumprod), (batch_size,))
        noise = torch.randn_like(x0)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(unet(xt, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - 0.999)
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{(time.time() - start) / 60:.1f} min", flush=True)
        out_of_time = (time.time() - start) / 60 > max_minutes
        if step % save_every == 0 or step == steps or out_of_time:
            save_pipeline(ema, scheduler, out / "pipeline")
            tmp = state_path.with_suffix(".tmp")
            torch.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "gen": data.gen.get_state(), "rng": torch.get_rng_state(), "step": step}, tmp)
            tmp.replace(state_path)
        if out_of_time:
            print(f"stopping at step {step}: --max-minutes reached")
            break


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/mini-ddpm"))
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--max-minutes", type=float, default=float("inf"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--clip-sample", action="store_true", help="save the scheduler with clip_sample=True")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train(args.out, args.steps, args.batch_size, args.lr, args.seed, args.save_every, args.max_minutes,
          args.clip_sample)


if __name__ == "__main__":
    main()
