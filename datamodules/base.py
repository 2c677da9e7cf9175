"""What every datamodule shares: samples {id, source, image, prompt}, failure records, and the predict loader."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from preciseinv.datamodules.images import CROPS, load_image

_UNSAFE = re.compile(r"[\x00-\x1f\\]")


def safe_id(raw: str) -> str:
    """An id usable as a relative path under output_dir: no absolute path, no '..', no empty or control parts."""
    parts = [p for p in _UNSAFE.sub("_", str(raw)).split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


def error_text(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:300]


def read_sample(sample_id: str, source: str, prompt: str, image_source, resolution: int,
                crop: str = "center") -> dict:
    """A sample dict; an unreadable image becomes ``error`` instead of an exception."""
    sample = {"id": sample_id, "source": source, "prompt": prompt}
    try:
        sample["image"] = load_image(image_source, resolution, crop)
    except Exception as err:  # corrupt, truncated, empty, not an image: a failure record, never a crashed run
        sample["error"] = error_text(err)
    return sample


def collate(samples: list[dict]) -> dict:
    """Stack the readable samples; unreadable ones travel on as ``failures``."""
    good = [s for s in samples if "error" not in s]
    return {
        "id": [s["id"] for s in good],
        "source": [s["source"] for s in good],
        "prompt": [s["prompt"] for s in good],
        "image": torch.stack([s["image"] for s in good]) if good else None,  # (B, 3, H, W)
        "failures": [{"id": s["id"], "source": s["source"], "reason": s["error"]} for s in samples if "error" in s],
        **({"target": [s.get("target") for s in good]} if any("target" in s for s in good) else {}),
    }


class ImageListDataset(Dataset):
    """(id, path, prompt) triples read lazily at a given resolution."""

    def __init__(self, items: list[tuple[str, str, str]], resolution: int, crop: str = "center"):
        self.items, self.resolution, self.crop = items, resolution, crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        sample_id, path, prompt = self.items[index]
        return read_sample(sample_id, str(path), prompt, path, self.resolution, self.crop)


class InversionDataModule(LightningDataModule, ABC):
    """Subclasses implement ``build_dataset()``; ``exclude`` holds ids finished by an earlier run."""

    def __init__(self, resolution: int | None = None, batch_size: int = 8, num_workers: int = 0,
                 prompt: str = "", exclude: set[str] | None = None, crop: str = "center"):
        super().__init__()
        if crop not in CROPS:
            from preciseinv.errors import PreciseInvError

            raise PreciseInvError(f"data.crop must be one of {', '.join(CROPS)}, got {crop!r}")
        self.crop = crop
        self.resolution, self.batch_size, self.num_workers = resolution, batch_size, num_workers
        self.prompt, self.exclude = prompt, set(exclude or ())
        self.dataset = None

    @abstractmethod
    def build_dataset(self):
        """The dataset of samples for ``self.resolution``, without the ids in ``self.exclude``."""

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            if not self.resolution:
                from preciseinv.errors import PreciseInvError

                raise PreciseInvError("data.resolution is not set and the model did not give one")
            self.dataset = self.build_dataset()

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        workers = min(self.num_workers, os.cpu_count() or 1)
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=workers,
                          collate_fn=collate, persistent_workers=False)
