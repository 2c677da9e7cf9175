"""``data=coco``: COCO 2017 (``<root>/val2017/*.jpg`` + ``<root>/annotations/captions_val2017.json``).

Ids are the image file stems (``000000000139``). Prompts are empty (the paper's reconstruction protocol) unless
``use_captions``: then each image's prompt is its first caption
(lowest annotation id). ``limit=N`` keeps the first N images by image id: the same subset on every machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from preciseinv.datamodules.base import ImageListDataset, InversionDataModule
from preciseinv.errors import PreciseInvError


def coco_items(root: str | Path, split: str = "val2017", use_captions: bool = False, prompt: str = "",
               limit: int | None = None) -> list[tuple[str, str, str]]:
    root = Path(root).expanduser()
    images_dir, ann = root / split, root / "annotations" / f"captions_{split}.json"
    if not images_dir.is_dir():
        raise PreciseInvError(f"no COCO image folder {str(images_dir)!r}: data.root must hold {split}/ and "
                              f"annotations/captions_{split}.json")
    captions: dict[int, tuple[int, str]] = {}
    if ann.is_file():
        data = json.loads(ann.read_text())
        files = {img["id"]: img["file_name"] for img in data["images"]}
        for a in data.get("annotations", []):
            best = captions.get(a["image_id"])
            if best is None or a["id"] < best[0]:
                captions[a["image_id"]] = (a["id"], a["caption"].strip())
    elif use_captions:
        raise PreciseInvError(f"COCO captions {str(ann)!r} not found: add them, or set data.use_captions=false")
    else:
        files = {i: p.name for i, p in enumerate(sorted(images_dir.glob("*.jpg")))}
    items = []
    for image_id in sorted(files):
        name = files[image_id]
        text = captions.get(image_id, (0, prompt))[1] if use_captions else prompt
        items.append((Path(name).stem, str(images_dir / name), text))
    if not items:
        raise PreciseInvError(f"no images listed for COCO {split} under {str(root)!r}")
    return items[:limit] if limit else items


class CocoDataModule(InversionDataModule):
    def __init__(self, root: str, split: str = "val2017", use_captions: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.root, self.split, self.use_captions = root, split, use_captions

    def build_dataset(self) -> ImageListDataset:
        return self.image_dataset(self.unfinished(coco_items(self.root, self.split, self.use_captions, self.prompt)))
