"""``data=folder``: every image file under a folder, recursively, in a deterministic order (sorted by relative path),
ids from the paths; ``limit=N`` keeps the first N in that order: the same subset on every machine."""

from __future__ import annotations

import os
from pathlib import Path

import preciseinv
from preciseinv.datamodules.base import ImageListDataset, InversionDataModule
from preciseinv.datamodules.images import IMAGE_EXTENSIONS
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


def folder_items(root: str | os.PathLike, prompt: str = "") -> list[tuple[str, str, str]]:
    """(id, path, prompt) for every image under ``root``; a clear error for a missing or empty folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PreciseInvError(f"data.root {str(root)!r} is not a folder: pass data.root=<folder of images>")
    paths = list_images(root)
    if not paths:
        raise PreciseInvError(f"no images found under {str(root)!r} (looked for "
                              f"{', '.join(sorted(IMAGE_EXTENSIONS))}): check data.root")
    ids = make_ids([p.relative_to(root).as_posix() for p in paths])
    return [(i, str(p), prompt) for i, p in zip(ids, paths)]


class FolderDataModule(InversionDataModule):
    """``data=folder data.root=DIR``; with no root, the images shipped with the package."""

    def __init__(self, root: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() if root else SAMPLE_IMAGES

    def check_output_dir(self, output_dir: Path) -> None:
        """An output_dir under the root would be listed with it: its reconstructions inverted by the next run."""
        out, root = Path(output_dir).expanduser().resolve(), self.root.resolve()
        if out == root or root in out.parents:
            raise PreciseInvError(f"output_dir {str(output_dir)!r} is inside data.root {str(self.root)!r}: a rerun "
                                  "would invert this run's reconstructions as images; choose an output_dir outside "
                                  "data.root")

    def build_dataset(self) -> ImageListDataset:
        return self.image_dataset(self.unfinished(folder_items(self.root, self.prompt)))


class SampleImages(FolderDataModule):
    """``data=samples`` (the default): the images shipped with the package, held out of the mini model's training;
    its own class so that a run's record names it ``data=samples``."""
