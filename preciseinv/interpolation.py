"""Paths between two inverted latents: slerp (the paper's choice) and lerp, per sample, in pure torch."""

from __future__ import annotations

import torch


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation of (B, ...) tensors, each sample flattened; lerp where they are (anti)parallel."""
    fa, fb = a.flatten(1).double(), b.flatten(1).double()  # (B, D)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(eps)
    theta = cos.clamp(-1, 1).acos()  # (B,)
    sin = theta.sin()
    safe = sin.abs() > 1e-4
    wa = torch.where(safe, ((1 - t) * theta).sin() / sin.where(safe, torch.ones_like(sin)), torch.full_like(sin, 1 - t))
    wb = torch.where(safe, (t * theta).sin() / sin.where(safe, torch.ones_like(sin)), torch.full_like(sin, t))
    out = wa[:, None] * fa + wb[:, None] * fb
    return out.view_as(a).to(a.dtype)


def path(a: torch.Tensor, b: torch.Tensor, frames: int, mode: str = "slerp") -> list[torch.Tensor]:
    """``frames`` latents from a to b inclusive."""
    if frames < 2:
        raise ValueError("frames must be at least 2")
    if a.shape != b.shape:
        from preciseinv.errors import PreciseInvError

        raise PreciseInvError(f"cannot interpolate latents of different shapes {tuple(a.shape[-3:])} and "
                              f"{tuple(b.shape[-3:])} (images of different sizes or aspect ratios): invert both at "
                              "the same size (data.crop=center, or the same data.resolution)")
    fn = {"slerp": slerp, "lerp": lerp}[mode]
    return [fn(a, b, i / (frames - 1)) for i in range(frames)]
