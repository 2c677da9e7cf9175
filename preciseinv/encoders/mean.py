"""``encoder=mean``: x0 = the VAE posterior mean (deterministic), or the pixels themselves."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Encoding:
    """x0 for a batch and per-sample statistics of how it was found (all (B,) tensors)."""

    x0: torch.Tensor  # (B, C, h, w)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class PosteriorMean:
    name = "mean"

    def describe(self) -> dict:
        return {"name": self.name}

    @torch.no_grad()
    def __call__(self, model, images: torch.Tensor, hooks=None) -> Encoding:
        return Encoding(model.encode(images).float())
