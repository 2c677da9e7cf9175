"""Images on disk: (3, H, W) tensors in [-1, 1] as 8-bit PNGs, written atomically."""

from __future__ import annotations

import torch

from preciseinv.outputs.atomic import atomic_write_bytes


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8 on the CPU."""
    return ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)


def png_bytes(image: torch.Tensor) -> bytes:
    """(3, H, W) in [-1, 1] as the bytes of an 8-bit PNG."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path, image: torch.Tensor) -> None:
    """Write (3, H, W) in [-1, 1] as an 8-bit PNG, atomically."""
    atomic_write_bytes(path, png_bytes(image))
