"""``data=piebench data.root=DIR``: PIE-Bench (Ju et al., "Direct Inversion", ICLR 2024), 700 images with a source
and a target prompt each, the words to blend and an edit mask, for ``python -m preciseinv.edit``.

Layout::

    DIR/mapping_file.json     {"<id>": {"image_path": "0_random_140/000000000000.jpg", "original_prompt": "...",
                                        "editing_prompt": "...", "editing_instruction": "...",
                                        "editing_type_id": "0", "blended_word": "cat dog", "mask": [start, length,
                                        start, length, ...]}, ...}
    DIR/annotation_images/<image_path>

Prompts lose PIE-Bench's [brackets]. The mask is a run-length code over the row-major pixels of the 512 x 512
image (pairs of start and length), with its one-pixel border set, as PIE-Bench decodes it; it goes through the same
resize and crop as the image. Each sample carries ``mask`` (1, H, W), ``blend_words`` and ``editing_type``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from preciseinv.datamodules.base import InversionDataModule, error_text, read_sample, safe_id
from preciseinv.errors import PreciseInvError


def decode_mask(runs: list[int], shape: tuple[int, int] = (512, 512)) -> np.ndarray:
    """PIE-Bench's run-length mask -> (H, W) float array, 1 on the region to edit (border included, as theirs)."""
    flat = np.zeros(shape[0] * shape[1], dtype=np.float32)
    for start, length in zip(runs[0::2], runs[1::2]):
        flat[int(start): int(start) + int(length)] = 1.0
    mask = flat.reshape(shape)
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 1.0
    return mask


def clean_prompt(text: str) -> str:
    return " ".join(str(text).replace("[", "").replace("]", "").split())


def fit_mask(mask: np.ndarray, resolution: int, crop: str) -> torch.Tensor:
    """The mask through the image's resize and crop (1, H, W), thresholded back to {0, 1}."""
    from PIL import Image

    from preciseinv.datamodules.images import fit_square

    img = Image.fromarray((mask * 255).astype(np.uint8)).convert("RGB")
    resized = np.asarray(fit_square(img, resolution, crop))[..., 0].astype(np.float32) / 255.0
    return torch.from_numpy((resized >= 0.5).astype(np.float32))[None]


class PieBenchRows(Dataset):
    def __init__(self, root: Path, resolution: int, exclude: set[str], crop: str = "center"):
        path = root / "mapping_file.json"
        if not path.is_file():
            raise PreciseInvError(f"data.root {str(root)!r} has no mapping_file.json: point it at PIE-Bench's data "
                                  "folder (mapping_file.json + annotation_images/)")
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise PreciseInvError(f"{str(path)!r} is not JSON ({err.msg}, line {err.lineno})") from None
        self.items = [(safe_id(key), row) for key, row in sorted(mapping.items()) if safe_id(key) not in exclude]
        self.root, self.resolution, self.crop = root, resolution, crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        sample_id, row = self.items[index]
        path = self.root / "annotation_images" / str(row.get("image_path", ""))
        if not row.get("image_path") or not path.is_file():
            return {"id": sample_id, "source": str(path), "prompt": "", "error": f"image {str(path)!r} does not exist"}
        sample = read_sample(sample_id, str(path), clean_prompt(row.get("original_prompt", "")), path,
                             self.resolution, self.crop)
        if "error" in sample:
            return sample
        try:
            from PIL import Image

            with Image.open(path) as img:
                w, h = img.size
            mask = decode_mask(row.get("mask") or [], (h, w))
            sample["mask"] = fit_mask(mask, self.resolution, self.crop)  # (1, H, W)
        except Exception as err:
            return {"id": sample_id, "source": str(path), "prompt": "", "error": f"bad mask: {error_text(err)}"}
        sample["target"] = clean_prompt(row.get("editing_prompt", ""))
        words = str(row.get("blended_word") or "").split()
        sample["blend_words"] = words
        sample["editing_type"] = str(row.get("editing_type_id", ""))
        return sample


class PieBenchDataModule(InversionDataModule):
    keeps_aspect_ratio = False  # PIE-Bench's images are square; its masks follow the image's crop

    def __init__(self, root: str, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise PreciseInvError(f"data.root {str(self.root)!r} is not a folder: pass data.root=<PIE-Bench data>")

    def build_dataset(self) -> PieBenchRows:
        return PieBenchRows(self.root, self.resolution, self.exclude, self.crop)
