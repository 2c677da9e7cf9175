"""Where the mini model's images come from: scikit-image's bundled sample images (no download).

The demo images shipped in ``preciseinv/assets/images`` are held out of training, so the default run
inverts images the model has never seen (the paper's "novel samples").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Held out of training and shipped as the default data (all public domain or CC0, see docs/mini_model.md).
DEMO_IMAGES = ("astronaut", "chelsea", "coffee", "rocket")
# Bundled with the scikit-image wheel; grayscale ones are repeated into three channels.
TRAIN_IMAGES = (
    "brick", "camera", "cell", "clock", "coins", "color", "grass", "gravel", "horse", "hubble_deep_field",
    "immunohistochemistry", "logo", "microaneurysms", "moon", "motorcycle_left", "page", "phantom",
    "retina", "text", "chessboard",
)
_FILES = {"chessboard": "chessboard_RGB", "clock": "clock_motion", "immunohistochemistry": "ihc",
          "motorcycle_left": "motorcycle_left"}


def skimage_image(name: str) -> np.ndarray:
    """One bundled scikit-image sample as uint8 RGB (H, W, 3)."""
    from PIL import Image
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    stem = _FILES.get(name, name)
    path = next((p for p in folder.iterdir() if p.stem == stem), None)
    if path is None:
        from preciseinv.errors import PreciseInvError

        raise PreciseInvError(f"scikit-image {skimage.__version__} bundles no sample image {stem!r} in {folder}")
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def export_demo_images(out_dir: Path, size: int = 128) -> list[Path]:
    """Write the held-out demo images as center-cropped ``size``-px PNGs (how ``assets/images`` was made)."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DEMO_IMAGES:
        img = Image.fromarray(skimage_image(name))
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        path = out_dir / f"{name}.png"
        img.save(path)
        paths.append(path)
    return paths


def export_crops(out_dir: Path, n: int, seed: int) -> list[Path]:
    """Write ``n`` random 32-px crops of the training images as PNGs, drawn as the mini model's training draws them
    (``train.RandomCrops``; another seed, other crops): images to learn a start from, or to test one on."""
    from PIL import Image

    from preciseinv.mini.train import RandomCrops

    out_dir.mkdir(parents=True, exist_ok=True)
    crops = RandomCrops(seed=seed).sample(n)  # (n, 3, 32, 32) in [-1, 1]
    paths = []
    for i, crop in enumerate(crops):
        pixels = ((crop.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()  # (32, 32, 3)
        path = out_dir / f"crop-{seed}-{i:05d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths
