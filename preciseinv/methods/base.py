"""What every inversion method returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class InversionResult:
    """x*_T for a batch, and per-step, per-sample statistics (index k = 0 is t_1, the least noisy step)."""

    latent: torch.Tensor  # (B, C, H, W) fp32, x*_T
    iters: list[torch.Tensor] = field(default_factory=list)  # T x (B,) gradient steps taken
    residual: list[torch.Tensor] = field(default_factory=list)  # T x (B,) final mean squared residual
    converged: list[torch.Tensor] = field(default_factory=list)  # T x (B,) residual < eta
    nfe_forward: torch.Tensor | None = None  # (B,) network forward calls during inversion
    nfe_backward: torch.Tensor | None = None  # (B,) network backward calls during inversion

    def per_sample(self) -> list[dict]:
        """One plain dict per sample: lists over steps, ready for JSON."""
        it = torch.stack(self.iters, 1).tolist()  # (B, T)
        res = torch.stack(self.residual, 1).tolist()
        conv = torch.stack(self.converged, 1).tolist()
        f, b = self.nfe_forward.tolist(), self.nfe_backward.tolist()
        return [{"iters": it[i], "residual": res[i], "converged": conv[i], "nfe_forward": f[i],
                 "nfe_backward": b[i]} for i in range(len(f))]
