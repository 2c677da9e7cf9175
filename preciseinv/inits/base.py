"""What every start returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Start:
    """The state a step's solver starts from, per sample."""

    x: torch.Tensor  # (B, C, h, w) x_{t_k}
    calls: torch.Tensor  # (B,) network forward calls spent choosing it (counted in nfe_forward and cost)
    taken: list[str]  # B: which start each sample took ("ddim", "learned"), recorded per step in the manifest


def injected_noise(sampler, x0: torch.Tensor, x_prev: torch.Tensor, k: int) -> torch.Tensor | None:
    """The noise z a noise-injecting sampler (lcm, ddpm) adds in step k's denoising step, as ``PreciseInv.invert``
    gives it: the state below's own noise, eps*_{k-1} = (x*_{k-1} - sqrt(a_{k-1}) x0) / sqrt(1 - a_{k-1})
    (B, C, h, w) (ddpm then solves z from there); None for the first step and for deterministic samplers."""
    return sampler.noise(x0, x_prev, k - 1) if sampler.injects_noise and k > 0 else None
