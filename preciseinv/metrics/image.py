"""Per-image metrics between a reconstruction and its target, both (B, 3, H, W) in [-1, 1]."""

from __future__ import annotations

import os
import sys

import torch

_LPIPS_WARNED = False


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image (B,), on the [0, 1] scale of 8-bit images."""
    mse = ((pred.float() - target.float()) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from torchmetrics.functional.image import structural_similarity_index_measure

    p, t = (pred.float() + 1) / 2, (target.float() + 1) / 2
    return structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")  # (B,)


def _load_lpips(net: str):
    """torchmetrics' LPIPS (needs torchvision and a download at first use); else our pure-torch LPIPS-alex when
    its converted weights are on disk (``python -m preciseinv.metrics.lpips``); else None, with one warning."""
    global _LPIPS_WARNED
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(net_type=net, reduction="none", normalize=False).eval()
    except Exception:  # no torchvision, no network: fall back, never crash
        from preciseinv.metrics.lpips import LPIPSAlex, weights_path

        if net == "alex" and weights_path().is_file():
            return LPIPSAlex.from_file()
        if not _LPIPS_WARNED and int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0:  # once a run
            print(f"preciseinv: LPIPS is off: no weights at {weights_path()} (`python -m preciseinv.metrics.lpips` "
                  "says how to make them, once); lpips=false hides this", file=sys.stderr, flush=True)
        _LPIPS_WARNED = True
        return None


class ImageMetrics:
    """PSNR, SSIM and (if it loads) LPIPS for a batch; values are (B,) tensors or None."""

    def __init__(self, lpips: bool = True, lpips_net: str = "alex"):
        self.lpips_net = lpips_net
        self._lpips = _load_lpips(lpips_net) if lpips else None

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor | None]:
        out = {"psnr": psnr(pred, target), "ssim": ssim(pred, target), "lpips": None}
        if self._lpips is not None:
            self._lpips.to(pred.device)
            out["lpips"] = self._lpips(pred.float().clamp(-1, 1), target.float().clamp(-1, 1)).reshape(-1)
        return out
