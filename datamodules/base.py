"""What every datamodule shares: samples {id, source, image, prompt}, failure records, and the predict loader."""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

from preciseinv.datamodules.images import CROPS, image_size, load_image
from preciseinv.errors import PreciseInvError, PreciseInvWarning
from preciseinv.preemption import ignore_in_worker

_UNSAFE = re.compile(r"[\x00-\x1f\\]")


def safe_id(raw: str) -> str:
    """An id usable as a relative path under output_dir: no absolute path, no '..', no empty or control parts."""
    parts = [p for p in _UNSAFE.sub("_", str(raw)).split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


def error_text(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:300]


def read_sample(sample_id: str, source: str, prompt: str, image_source, resolution: int,
                crop: str = "center", multiple: int = 8, max_side: int | None = None) -> dict:
    """A sample dict; an unreadable image becomes ``error`` instead of an exception. An image file's bytes, read
    once, also give its ``source_file`` {size, sha256}: a rerun redoes the sample if the file changed."""
    sample = {"id": sample_id, "source": source, "prompt": prompt}
    try:
        if isinstance(image_source, (str, os.PathLike)):
            data = Path(image_source).read_bytes()
            sample["source_file"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            image_source = io.BytesIO(data)
        if isinstance(image_source, io.BytesIO) and not image_source.getbuffer().nbytes:  # a file or a shard member
            raise ValueError("the file is empty (0 bytes)")
        sample["image"] = load_image(image_source, resolution, crop, multiple, max_side)
    except Exception as err:  # corrupt, truncated, empty, not an image: a failure record, never a crashed run
        sample["error"] = error_text(err).replace(repr(image_source), repr(source))  # a stream: named by its sample
    return sample


ANNOTATIONS = ("blend_words", "editing_type")  # per-sample fields a dataset may add; copied into the records


def collate(samples: list[dict]) -> dict:
    """Stack the readable samples; unreadable ones travel on as ``failures``."""
    good = [s for s in samples if "error" not in s]
    return {
        "id": [s["id"] for s in good],
        "source": [s["source"] for s in good],
        "prompt": [s["prompt"] for s in good],
        "source_file": [s.get("source_file") for s in good],  # {size, sha256} of an image file, else None
        "image": torch.stack([s["image"] for s in good]) if good else None,  # (B, 3, H, W)
        "failures": [{"id": s["id"], "source": s["source"], "reason": s["error"]} for s in samples if "error" in s],
        **({"target": [s.get("target") for s in good]} if any("target" in s for s in good) else {}),
        # PIE-Bench: the edit masks (B, 1, H, W) and per-sample annotations the records keep
        **({"mask": torch.stack([s["mask"] for s in good])} if good and all("mask" in s for s in good) else {}),
        **{k: [s.get(k) for s in good] for k in ANNOTATIONS if any(k in s for s in good)},
    }


def collate_batch(batches: list[list[dict]]) -> dict:
    """``collate`` of the one pre-formed batch a ``ShapeBuckets`` item is. A sample whose decoded shape is not its
    bucket's (never expected: the shape is read from the header both times) becomes a failure record."""
    samples = [sample for batch in batches for sample in batch]
    shapes = [tuple(s["image"].shape) for s in samples if "error" not in s]
    if shapes:
        common = max(set(shapes), key=shapes.count)
        for s in samples:
            if "error" not in s and tuple(s["image"].shape) != common:
                s["error"] = f"decoded as {tuple(s.pop('image').shape)[1:]}, its batch is {common[1:]}"
    return collate(samples)


class ImageListDataset(Dataset):
    """(id, path, prompt) triples read lazily at a given resolution."""

    def __init__(self, items: list[tuple[str, str, str]], resolution: int, crop: str = "center", multiple: int = 8,
                 max_side: int | None = None):
        self.items, self.resolution, self.crop = items, resolution, crop
        self.multiple, self.max_side = multiple, max_side

    @property
    def num_samples(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        sample_id, path, prompt = self.items[index]
        return read_sample(sample_id, str(path), prompt, path, self.resolution, self.crop, self.multiple,
                           self.max_side)


LONG = 8  # crop=none: a long side over this many times the resolution is worth a word


class ShapeBuckets(ImageListDataset):
    """``crop="none"``: images keep their aspect ratio, so a batch may only hold images of one shape. Each item of
    this dataset is a whole batch (up to ``batch_size`` samples of one shape, read from the files' headers once);
    the loader shards these batches over ranks (``RankShard``, unpadded), so every
    sample is still read, inverted and written exactly once. Unreadable headers form batches of their own (their
    samples become failure records)."""

    def __init__(self, items, resolution: int, crop: str = "none", multiple: int = 8, max_side: int | None = None,
                 batch_size: int = 8):
        super().__init__(items, resolution, crop, multiple, max_side)
        groups: dict = {}
        for index, (_, path, _) in enumerate(items):
            try:
                key = image_size(path, resolution, crop, multiple, max_side)
            except Exception:  # read again (and recorded as a failure) with the batch
                key = "unreadable"
            groups.setdefault(key, []).append(index)
        long = {k: len(v) for k, v in groups.items() if k != "unreadable" and max(k) > LONG * resolution}
        if long and not max_side:  # a strip of an image: its cost grows with its long side
            shape = max(long, key=max)
            warnings.warn(f"data.crop=none: {sum(long.values())} image(s) have a long side over {LONG}x "
                          f"data.resolution (up to {shape[0]}x{shape[1]}), and each costs that much more; "
                          "data.max_side=N caps it", PreciseInvWarning, stacklevel=2)
        self.shapes = {k: len(v) for k, v in groups.items()}
        self.groups = list(groups.values())
        self.rebatch(batch_size)

    def rebatch(self, batch_size: int) -> None:
        """Cut each shape's samples into batches of ``batch_size`` (again, once ``auto`` is resolved)."""
        self.batches = [idx[i:i + batch_size] for idx in self.groups for i in range(0, len(idx), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[dict]:
        return [ImageListDataset.__getitem__(self, i) for i in self.batches[index]]


class InversionDataModule(LightningDataModule, ABC):
    """Subclasses implement ``build_dataset()``; ``exclude`` holds the ids an earlier run finished, or maps each to
    its record's ``source``, ``prompt`` and ``target`` (a listed file whose id changed since is still finished; an
    edit whose prompts changed is not)."""

    keeps_aspect_ratio = True  # crop=none: shape buckets need the image sizes up front (map-style datasets)

    def __init__(self, resolution: int | None = None, batch_size: int | str = 8, num_workers: int = 0,
                 prompt: str = "", exclude: set[str] | Mapping[str, dict] | None = None, crop: str = "center",
                 size_multiple: int = 8, max_side: int | None = None, limit: int | None = None):
        super().__init__()
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise PreciseInvError(f"data.limit must be a positive integer (the first N images) or null, got {limit!r}")
        self.limit = limit
        if crop not in CROPS:
            raise PreciseInvError(f"data.crop must be one of {', '.join(CROPS)}, got {crop!r}")
        if crop == "none" and not self.keeps_aspect_ratio:
            raise PreciseInvError(f"data.crop=none is not available with {type(self).__name__} (shape buckets need "
                                  "every image's size up front): use data=folder or data=coco, or data.crop=center")
        self.crop, self.size_multiple, self.max_side = crop, size_multiple, max_side
        if str(batch_size) != "auto" and (not str(batch_size).isdigit() or int(batch_size) < 1):
            raise PreciseInvError(f"data.batch_size must be a positive integer or auto, got {batch_size!r}")
        batch_size = "auto" if str(batch_size) == "auto" else int(batch_size)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise PreciseInvError(f"data.num_workers must be a whole number, 0 (load in the main process) or more, "
                                  f"got {num_workers!r}")
        self.resolution, self.batch_size, self.num_workers = resolution, batch_size, num_workers
        self.prompt = prompt
        self.exclude = dict(exclude) if isinstance(exclude, Mapping) else {i: {} for i in exclude or ()}
        self.exclude_sources = {record["source"] for record in self.exclude.values() if record.get("source")}
        self.dataset = None

    def set_batch_size(self, batch_size: int) -> None:
        """Resolve ``auto`` (before the loader is built); shape buckets are cut again."""
        self.batch_size = int(batch_size)
        if isinstance(self.dataset, ShapeBuckets):
            self.dataset.rebatch(self.batch_size)

    def unfinished(self, items: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """The first ``limit`` of the (id, path, prompt) items (the same subset on every machine and every rerun),
        less those an earlier run finished (by id, or by source file)."""
        items = items[:self.limit] if self.limit else items
        return [it for it in items if it[0] not in self.exclude and it[1] not in self.exclude_sources]

    def image_dataset(self, items: list[tuple[str, str, str]]) -> ImageListDataset:
        """The dataset of (id, path, prompt) items under this module's crop policy (shape buckets for ``none``)."""
        if self.crop == "none":
            return ShapeBuckets(items, self.resolution, self.crop, self.size_multiple, self.max_side,
                                self.batch_size if self.batch_size != "auto" else 1)
        return ImageListDataset(items, self.resolution, self.crop)

    def check_output_dir(self, output_dir: Path) -> None:
        """Refuse an output_dir this dataset would read as input (none here: it does not list a folder)."""

    @abstractmethod
    def build_dataset(self):
        """The dataset of samples for ``self.resolution``, without the ids in ``self.exclude``."""

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            if not self.resolution:
                raise PreciseInvError("data.resolution is not set and the model did not give one")
            self.dataset = self.build_dataset()

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        if self.batch_size == "auto":  # what the module's probe found (its setup runs before this hook), else
            from preciseinv.accel.batch_size import CPU_BATCH  # the CPU default (a loader built outside a run)

            module = getattr(getattr(self, "trainer", None), "lightning_module", None)
            self.set_batch_size(getattr(module, "resolved", {}).get("batch_size", CPU_BATCH))
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(self.num_workers, usable)  # the CPUs this process may use (taskset, a job scheduler's CPU set)
        pin = torch.cuda.is_available()  # page-locked host batches: faster, asynchronous copies to the GPU
        buckets = isinstance(self.dataset, ShapeBuckets)  # each item is already a batch of one shape
        return DataLoader(self.dataset, batch_size=1 if buckets else self.batch_size, shuffle=False,
                          sampler=RankShard.of(self.dataset, getattr(self, "trainer", None)), num_workers=workers,
                          collate_fn=collate_batch if buckets else collate, persistent_workers=False,
                          worker_init_fn=ignore_in_worker, pin_memory=pin)


class RankShard(DistributedSampler):
    """This rank's items of a map-style dataset, ``rank::world_size``, unpadded (each item once over all ranks),
    and possibly none: a rerun that finds fewer unfinished samples than ranks (a resumed 8-GPU job with 3 images
    left) gives some ranks nothing to do, where Lightning's own predict sampler asserts every rank has an item.
    Being a ``DistributedSampler``, Lightning keeps it as it is.

    An empty shard still reports a length of one: Lightning refuses a rank whose loader has no batch (and, told to
    allow it, skips that rank's predict hooks, so the writer's end-of-run collectives in ``on_predict_end`` would
    wait for it forever). Its loader yields nothing, so the rank runs its hooks around an empty loop."""

    def __init__(self, dataset, rank: int, world_size: int):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        self.indices = list(range(rank, len(dataset), world_size))
        self.num_samples = self.total_size = len(self.indices)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return max(1, len(self.indices))  # see the class docstring: an empty shard runs its hooks

    @classmethod
    def of(cls, dataset, trainer) -> RankShard | None:
        """The shard of ``trainer``'s rank, or None (the loader's default) outside a multi-process run and for a
        stream (an ``IterableDataset`` such as WebDataset shards splits itself by rank and worker)."""
        shard = getattr(trainer, "distributed_sampler_kwargs", None) or {}  # Lightning's: num_replicas, rank
        if shard.get("num_replicas", 1) == 1 or isinstance(dataset, IterableDataset):
            return None
        return cls(dataset, shard["rank"], shard["num_replicas"])
