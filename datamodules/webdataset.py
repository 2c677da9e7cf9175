"""``data=webdataset data.urls=...``: local .tar shards, split across nodes/ranks and dataloader workers.

Each rank reads whole shards (``split_by_node``), each worker a share of those (``split_by_worker``), so every
sample is read once. A sample's image is its first member with an image extension; its prompt, when
``caption_key`` is set, that member's text (``txt``) or JSON field (``json`` with a ``caption`` key). Keys are
made safe as relative paths (no ``/`` escapes, no ``..``).
"""

from __future__ import annotations

import io
import json
import os

from torch.utils.data import IterableDataset

from preciseinv.datamodules.base import InversionDataModule, read_sample, safe_id
from preciseinv.errors import PreciseInvError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm")


def expand_urls(urls) -> list[str]:
    import braceexpand

    urls = [urls] if isinstance(urls, str) else list(urls)
    out = [u for pattern in urls for u in braceexpand.braceexpand(pattern)]
    if not out:
        raise PreciseInvError("data.urls is empty: give a brace pattern such as /data/shard-{000000..000099}.tar")
    missing = [u for u in out if "://" not in u and not u.startswith("pipe:") and not os.path.isfile(u)]
    if missing:
        raise PreciseInvError(f"{len(missing)} shard(s) not found, first {missing[0]!r}: check data.urls")
    return out


class ShardSamples(IterableDataset):
    def __init__(self, urls: list[str], resolution: int, prompt: str = "", caption_key: str | None = None,
                 exclude: set[str] | None = None, crop: str = "center"):
        self.urls, self.resolution, self.prompt, self.crop = urls, resolution, prompt, crop
        self.caption_key, self.exclude = caption_key, exclude or set()

    def _prompt(self, sample: dict) -> str:
        value = sample.get(self.caption_key) if self.caption_key else None
        if value is None:
            return self.prompt
        if self.caption_key.endswith("json"):
            return str(json.loads(value).get("caption", self.prompt))
        return value.decode("utf-8", "replace").strip()

    def __iter__(self):
        import webdataset as wds

        pipeline = wds.DataPipeline(
            wds.SimpleShardList(self.urls),
            wds.split_by_node,
            wds.split_by_worker,
            wds.tarfile_to_samples(handler=wds.warn_and_continue),
        )
        for sample in pipeline:
            sample_id = safe_id(sample["__key__"])
            if sample_id in self.exclude:
                continue
            source = f"{sample.get('__url__', '')}#{sample['__key__']}"
            key = next((k for k in IMAGE_KEYS if k in sample), None)
            if key is None:
                yield {"id": sample_id, "source": source, "prompt": "", "error": "no image member in this sample"}
                continue
            yield read_sample(sample_id, source, self._prompt(sample), io.BytesIO(sample[key]), self.resolution,
                              self.crop)


class WebDataModule(InversionDataModule):
    keeps_aspect_ratio = False  # streamed: sizes are not known up front

    def __init__(self, urls, caption_key: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.urls, self.caption_key = urls, caption_key

    def build_dataset(self) -> ShardSamples:
        return ShardSamples(expand_urls(self.urls), self.resolution, self.prompt, self.caption_key, self.exclude,
                            self.crop)
