"""Reading an image file into the model's square input, whatever its mode, orientation or size.

Policy (documented in the README): EXIF orientation is applied; every mode becomes RGB (16-bit is rescaled,
alpha is composited on white, CMYK and palette are converted); then, with ``crop="center"`` (default), the short
side is resized to the model's resolution with Lanczos filtering and the center square is cropped, or with
``crop="stretch"`` the whole image is resized to the square (aspect ratio not kept, nothing cut off).
"""

from __future__ import annotations

import numpy as np
import torch

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


def to_rgb(img):
    """A PIL image in any mode as 8-bit RGB."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


CROPS = ("center", "stretch")


def resize_center_crop(img, size: int):
    """Short side to ``size`` (Lanczos), then the center ``size`` x ``size`` square."""
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    img = img.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0 if scale < 0.25 else None)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img) -> torch.Tensor:
    """(3, H, W) float in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1.0


def fit_square(img, size: int, crop: str = "center"):
    """The ``crop`` policy: center crop after a short-side resize, or a stretch of the whole image."""
    from PIL import Image

    if crop == "stretch":
        return img.resize((size, size), Image.Resampling.LANCZOS)
    return resize_center_crop(img, size)


def load_image(path, size: int, crop: str = "center") -> torch.Tensor:
    """The model-ready tensor (3, size, size) in [-1, 1] of an image file (or file object)."""
    from PIL import Image

    with Image.open(path) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at reduced scale when far larger than needed
        return to_tensor(fit_square(to_rgb(img), size, crop))


from preciseinv.outputs.images import png_bytes, save_png, to_uint8  # noqa: E402,F401  (moved; kept importable)
