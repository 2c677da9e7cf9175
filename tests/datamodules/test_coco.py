import json

import pytest

from preciseinv.datamodules.coco import CocoDataModule, coco_items
from preciseinv.errors import PreciseInvError


def make_coco(root, n=5):
    from preciseinv.testing.tiny import write_images

    names = [f"{i * 7:012d}.jpg" for i in range(n)]
    write_images(root / "val2017", names, size=40)
    images = [{"id": i * 7, "file_name": name} for i, name in enumerate(names)]
    anns = [{"id": 100 + k, "image_id": img["id"], "caption": f" caption {k} of {img['id']} "} for img in images
            for k in (2, 1)]
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": images[::-1], "annotations": anns}))
    return names


def test_ids_order_limit_and_captions(tmp_path):
    names = make_coco(tmp_path)
    items = coco_items(tmp_path, limit=3, use_captions=True)
    assert [i for i, _, _ in items] == [n[:-4] for n in names[:3]]  # sorted by image id, first 3
    assert items[1][2] == "caption 1 of 7"  # first caption = lowest annotation id, stripped
    assert all(p == "" for _, _, p in coco_items(tmp_path))  # default: the paper's empty prompt


def test_datamodule_batches(tmp_path):
    make_coco(tmp_path)
    dm = CocoDataModule(root=str(tmp_path), limit=4, resolution=16, batch_size=3, exclude={"000000000000"})
    batches = list(dm.predict_dataloader())
    assert sum(len(b["id"]) for b in batches) == 3 and batches[0]["image"].shape == (3, 3, 16, 16)


def test_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(PreciseInvError, match="val2017/ and annotations/captions_val2017.json"):
        coco_items(tmp_path)
    (tmp_path / "val2017").mkdir()
    with pytest.raises(PreciseInvError, match="use_captions=false"):
        coco_items(tmp_path, use_captions=True)
