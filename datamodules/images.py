"""Reading an image file into the model's square input, whatever its mode, orientation or size.

Policy (documented in docs/configuration.md): EXIF orientation is applied; every mode becomes RGB (16-bit is rescaled,
alpha is composited on white, CMYK and palette are converted); then, with ``crop="center"`` (default), the short
side is resized to the model's resolution with Lanczos filtering and the center square is cropped, with
``crop="stretch"`` the whole image is resized to the square (aspect ratio not kept, nothing cut off), and with
``crop="none"`` the aspect ratio is kept: the short side becomes the resolution and the long side the nearest
multiple of the model's size multiple (capped by ``max_side``), so nothing is cut off and the shape changes by at
most half a multiple.
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


CROPS = ("center", "stretch", "none")
EXIF_ROTATED = (5, 6, 7, 8)  # orientations that swap width and height


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def target_size(width: int, height: int, resolution: int, multiple: int = 8,
                max_side: int | None = None) -> tuple[int, int]:
    """(H, W) of an image of ``width`` x ``height`` under ``crop="none"``: short side ``resolution`` and long side
    the aspect ratio's, both rounded to the multiple; where the long side would pass ``max_side``, both sides are
    scaled down together (the aspect ratio is kept, the short side then falls below ``resolution``)."""
    short_in, long_in = min(width, height), max(width, height)
    scale = resolution / short_in
    if max_side and long_in * scale > max_side:
        scale = max_side / long_in
    short, long = _round_to(short_in * scale, multiple), _round_to(long_in * scale, multiple)
    if max_side:
        long = min(long, max(multiple, max_side // multiple * multiple))
    return (short, long) if height <= width else (long, short)


def _oriented_size(img) -> tuple[int, int]:
    """(width, height) as shown: EXIF orientations 5-8 swap the stored sides."""
    w, h = img.size
    return (h, w) if img.getexif().get(0x0112) in EXIF_ROTATED else (w, h)


def image_size(source, resolution: int, crop: str = "center", multiple: int = 8,
               max_side: int | None = None) -> tuple[int, int]:
    """(H, W) that ``load_image`` will return, from the file's header (no decode)."""
    if crop != "none":
        return resolution, resolution
    from PIL import Image

    with Image.open(source) as img:
        return target_size(*_oriented_size(img), resolution, multiple, max_side)


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


def fit_square(img, size: int, crop: str = "center", multiple: int = 8, max_side: int | None = None,
               shape: tuple[int, int] | None = None):
    """The ``crop`` policy: center crop after a short-side resize, a stretch of the whole image, or (``none``) the
    whole image at its own aspect ratio: to ``shape`` (H, W) when given (``load_image`` reads it from the header,
    before a JPEG draft decode rounds the sides), else ``target_size`` of the image as it is."""
    from PIL import Image

    if crop == "stretch":
        return img.resize((size, size), Image.Resampling.LANCZOS)
    if crop == "none":
        h, w = shape or target_size(img.size[0], img.size[1], size, multiple, max_side)
        scale = h / img.size[1]
        return img.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0 if scale < 0.25 else None)
    return resize_center_crop(img, size)


def load_image(path, size: int, crop: str = "center", multiple: int = 8, max_side: int | None = None) -> torch.Tensor:
    """The model-ready tensor (3, H, W) in [-1, 1] of an image file (or file object): H = W = size, except with
    ``crop="none"`` (see ``target_size``)."""
    from PIL import Image

    with Image.open(path) as img:
        # the shape comes from the header (as image_size computes it for the shape buckets), before draft()
        shape = target_size(*_oriented_size(img), size, multiple, max_side) if crop == "none" else None
        img.draft("RGB", (size, size))  # JPEG: decode at reduced scale when far larger than needed
        return to_tensor(fit_square(to_rgb(img), size, crop, multiple, max_side, shape))


