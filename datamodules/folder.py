"""Every image file under a folder, recursively, in a deterministic order, with ids derived from the paths."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

import preciseinv

from preciseinv.datamodules.images import IMAGE_EXTENSIONS, load_image
from preciseinv.errors import PreciseInvError

SAMPLE_IMAGES = Path(preciseinv.__file__).resolve().parent / "assets" / "images"


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (by extension), sorted by their relative POSIX path."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        found += [Path(folder, f) for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def make_ids(relpaths: list[str]) -> list[str]:
    """Ids from relative paths: the path without its extension, or with it when two files would collide."""
    stems = [os.path.splitext(p)[0] for p in relpaths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else p for s, p in zip(stems, relpaths)]


class ImageFolder(Dataset):
    def __init__(self, root: str | os.PathLike, resolution: int, prompt: str = "", exclude: set[str] | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise PreciseInvError(f"data.root {str(self.root)!r} is not a folder: pass data.root=<folder of images>")
        paths = list_images(self.root)
        if not paths:
            raise PreciseInvError(f"no images found under {str(self.root)!r} (looked for "
                                  f"{', '.join(sorted(IMAGE_EXTENSIONS))}): check data.root")
        rel = [p.relative_to(self.root).as_posix() for p in paths]
        items = list(zip(make_ids(rel), paths))
        self.items = [(i, p) for i, p in items if not exclude or i not in exclude]
        self.resolution, self.prompt = resolution, prompt

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        sample_id, path = self.items[index]
        sample = {"id": sample_id, "source": str(path), "prompt": self.prompt}
        try:
            sample["image"] = load_image(path, self.resolution)
        except Exception as err:  # unreadable file: a failure record, never a crashed run
            sample["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
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
    }


class FolderDataModule(LightningDataModule):
    """``data=folder data.root=DIR`` (and ``data=samples``: the images shipped with the package)."""

    def __init__(self, root: str | None = None, resolution: int | None = None, batch_size: int = 8,
                 num_workers: int = 0, prompt: str = "", exclude: set[str] | None = None):
        super().__init__()
        self.root = Path(root).expanduser() if root else SAMPLE_IMAGES
        self.resolution, self.batch_size, self.num_workers = resolution, batch_size, num_workers
        self.prompt, self.exclude = prompt, exclude
        self.dataset: ImageFolder | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            if not self.resolution:
                raise PreciseInvError("data.resolution is not set and the model did not give one")
            self.dataset = ImageFolder(self.root, self.resolution, self.prompt, self.exclude)

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate, persistent_workers=self.num_workers > 0)
