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
