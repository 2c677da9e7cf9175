import pytest
import torch
from PIL import Image

from preciseinv.datamodules.base import ImageListDataset, collate, safe_id
from preciseinv.datamodules.folder import FolderDataModule, folder_items, list_images, make_ids
from preciseinv.datamodules.images import load_image
from preciseinv.errors import PreciseInvError


def test_recursive_deterministic_listing_and_unique_ids(tmp_path):
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path, ["b.png", "a/x.jpg", "a/x.png", "sub dir/ünï code.png", "z/b.png"])
    (tmp_path / "notes.txt").write_text("not an image")
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert rel == ["a/x.jpg", "a/x.png", "b.png", "sub dir/ünï code.png", "z/b.png"]
    ids = make_ids(rel)
    assert ids == ["a/x.jpg", "a/x.png", "b", "sub dir/ünï code", "z/b"] and len(set(ids)) == len(ids)


def test_dataset_yields_model_ready_tensors_and_failure_records(tmp_path):
    from preciseinv.testing.tiny import write_images

    write_images(tmp_path, ["good.png"], size=50)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    ds = ImageListDataset(folder_items(tmp_path, prompt="a photo"), resolution=16)
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["id"] == ["good"] and batch["prompt"] == ["a photo"]
    assert batch["image"].shape == (1, 3, 16, 16)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert sorted(f["id"] for f in batch["failures"]) == ["broken", "empty"]
    assert all(f["reason"] for f in batch["failures"])
    reason = {f["id"]: f["reason"] for f in batch["failures"]}["empty"]
    assert reason == "ValueError: the file is empty (0 bytes)"  # not PIL's "cannot identify image file"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_image_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50))
    if mode == "I;16":
        img = Image.new("I;16", (40, 30), 40000)
    else:
        img = img.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    x = load_image(path, 8)
    assert x.shape == (3, 8, 8) and torch.isfinite(x).all()
    if mode == "I;16":
        assert torch.allclose(x, torch.full_like(x, 40000 / 65535 * 2 - 1), atol=0.01)


def test_resize_short_side_then_center_crop(tmp_path):
    import numpy as np

    arr = np.zeros((20, 60, 3), dtype=np.uint8)
    arr[:, 20:40] = 255  # a white center third: after short-side resize + center crop, all white
    Image.fromarray(arr).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", 10)
    assert x.shape == (3, 10, 10) and x[:, :, 2:8].min() > 0.9


def test_clear_errors_for_missing_or_empty_folders(tmp_path):
    with pytest.raises(PreciseInvError, match="no images found"):
        folder_items(tmp_path)
    with pytest.raises(PreciseInvError, match="is not a folder"):
        folder_items(tmp_path / "nope")


def test_datamodule_defaults_to_the_shipped_sample_images():
    dm = FolderDataModule(resolution=32, batch_size=3)
    batches = list(dm.predict_dataloader())
    assert [len(b["id"]) for b in batches] == [3, 1]
    assert sorted(sum((b["id"] for b in batches), [])) == ["astronaut", "chelsea", "coffee", "rocket"]


def test_exclude_skips_finished_ids():
    dm = FolderDataModule(resolution=32, exclude={"astronaut", "rocket"})
    dm.setup()
    assert [i for i, _, _ in dm.dataset.items] == ["chelsea", "coffee"]


@pytest.mark.parametrize("raw,expected", [
    ("a/b", "a/b"), ("/etc/passwd", "etc/passwd"), ("../../x", "x"), ("a/../../b", "a/b"), ("", "_"), ("..", "_"),
    ("c\\d\x00e", "c_d_e"),
])
def test_safe_ids_stay_inside_the_output_dir(raw, expected):
    assert safe_id(raw) == expected


def test_exif_orientation_is_applied(tmp_path):
    import numpy as np

    arr = np.zeros((24, 36, 3), dtype=np.uint8)
    arr[:, :18] = 255  # stored: white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: white on top
    Image.fromarray(arr).save(tmp_path / "r.png", exif=exif.tobytes())
    x = load_image(tmp_path / "r.png", 8)
    assert x[:, 0, :].mean() > 0.9 and x[:, -1, :].mean() < -0.9


def test_crop_policy_center_or_stretch(tmp_path):
    import numpy as np

    arr = np.zeros((20, 60, 3), dtype=np.uint8)
    arr[:, :20] = 255  # white left third: cut off by a center crop, squashed into view by a stretch
    Image.fromarray(arr).save(tmp_path / "wide.png")
    center, stretch = load_image(tmp_path / "wide.png", 12), load_image(tmp_path / "wide.png", 12, crop="stretch")
    assert center[:, :, :3].max() < -0.9 and stretch[:, :, :3].min() > 0.9
    with pytest.raises(PreciseInvError, match="data.crop must be one of center, stretch"):
        FolderDataModule(resolution=12, crop="zoom")
    dm = FolderDataModule(root=str(tmp_path), resolution=12, crop="stretch")
    assert torch.allclose(next(iter(dm.predict_dataloader()))["image"][0], stretch)


def test_crop_none_keeps_the_aspect_ratio_and_buckets_by_shape(tmp_path):
    from PIL import Image

    from preciseinv.datamodules.base import ShapeBuckets, collate_batch
    from preciseinv.datamodules.folder import FolderDataModule
    from preciseinv.datamodules.images import target_size

    assert target_size(96, 48, 32, 16) == (32, 64) and target_size(40, 80, 32, 16) == (64, 32)
    assert target_size(200, 40, 32, 16) == (32, 160)
    assert target_size(200, 40, 32, 16, max_side=100) == (16, 96)  # both sides scaled: the aspect ratio is kept
    assert target_size(300, 1000, 32, 16, max_side=48) == (48, 16)
    assert target_size(50, 50, 30, 16) == (32, 32)  # the short side too is a multiple
    sizes = {"a": (96, 48), "b": (40, 80), "c": (50, 50), "d": (90, 45), "e": (200, 40), "f": (94, 47)}
    for name, size in sizes.items():
        Image.new("RGB", size, (10, 200, 30)).save(tmp_path / f"{name}.png")
    rotated = Image.new("RGB", (96, 48), (1, 2, 3))  # stored wide, shown tall (EXIF orientation 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "r.jpg", exif=exif.tobytes())
    (tmp_path / "z.png").write_bytes(b"not an image")
    dm = FolderDataModule(root=str(tmp_path), resolution=32, crop="none", size_multiple=16, batch_size=2,
                          exclude={"f"})
    dm.setup()
    assert isinstance(dm.dataset, ShapeBuckets) and dm.dataset.num_samples == 7
    seen, failures = [], []
    for batch in dm.predict_dataloader():
        failures += [f["id"] for f in batch["failures"]]
        if batch["image"] is None:
            continue
        assert len(batch["id"]) <= 2 and len({tuple(i.shape) for i in batch["image"]}) == 1  # one shape per batch
        seen += batch["id"]
        for sample_id, image in zip(batch["id"], batch["image"]):
            w, h = sizes.get(sample_id, (48, 96))
            assert min(image.shape[-2:]) == 32 and image.shape[-1] % 16 == 0 and image.shape[-2] % 16 == 0
            assert abs(image.shape[-1] / image.shape[-2] - w / h) < 0.25 * w / h
    assert sorted(seen) == ["a", "b", "c", "d", "e", "r"] and failures == ["z"]  # each once; f was done before
    assert collate_batch([[]])["image"] is None


def test_crop_none_warns_of_a_strip_of_an_image_unless_max_side_caps_it(tmp_path):
    import warnings

    from PIL import Image

    from preciseinv.datamodules.folder import FolderDataModule

    Image.new("RGB", (1000, 2), (10, 200, 30)).save(tmp_path / "strip.png")  # 32 px high: 16000 wide
    Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp_path / "square.png")
    with pytest.warns(UserWarning, match=r"data.crop=none: 1 image\(s\) have a long side over 8x data.resolution "
                                         r"\(up to 32x16000\).*data.max_side=N caps it"):
        FolderDataModule(root=str(tmp_path), resolution=32, crop="none", size_multiple=16).setup()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FolderDataModule(root=str(tmp_path), resolution=32, crop="none", size_multiple=16, max_side=256).setup()


@pytest.mark.parametrize("size,resolution,multiple", [((1527, 1024), 512, 8), ((1530, 1025), 512, 8),
                                                      ((3091, 2050), 1024, 16)])
def test_a_large_jpeg_loads_at_its_bucket_shape(tmp_path, size, resolution, multiple):
    """JPEG draft decoding rounds the sides: the shape must still be the one computed from the header."""
    from PIL import Image

    from preciseinv.datamodules.images import image_size

    path = tmp_path / "big.jpg"
    Image.new("RGB", size, (90, 120, 30)).save(path, quality=80)
    expected = image_size(path, resolution, "none", multiple)
    assert tuple(load_image(path, resolution, "none", multiple).shape[-2:]) == expected


def test_shape_buckets_split_over_ranks_disjointly(tmp_path):
    """The loader's own sampler on each of 3 ranks (RankShard) over shape-bucketed batches: each sample on one rank
    once."""
    from PIL import Image

    from preciseinv.datamodules.base import RankShard
    from preciseinv.datamodules.folder import FolderDataModule

    for i, size in enumerate([(96, 48)] * 5 + [(40, 80)] * 3 + [(50, 50)] * 4):
        Image.new("RGB", size, (i, 0, 0)).save(tmp_path / f"{i:02d}.png")
    seen = []
    for rank in range(3):
        dm = FolderDataModule(root=str(tmp_path), resolution=32, crop="none", size_multiple=16, batch_size=2)
        dm.trainer = FakeTrainer(rank, 3)
        loader = dm.predict_dataloader()
        assert isinstance(loader.sampler, RankShard)
        seen += [sample_id for batch in loader for sample_id in batch["id"]]
    assert sorted(seen) == [f"{i:02d}" for i in range(12)]  # all, and none twice


class FakeTrainer:
    """What the loader reads of a Lightning trainer in a multi-process run."""

    def __init__(self, rank: int, world_size: int):
        self.distributed_sampler_kwargs = {"num_replicas": world_size, "rank": rank}


def test_rank_shards_cover_every_item_once_and_an_empty_shard_still_runs():
    """RankShard: rank::world_size, unpadded; fewer items than ranks leaves a rank an empty shard that reports one
    batch (so Lightning runs its hooks) and yields none."""
    from preciseinv.datamodules.base import RankShard

    items = list(range(5))
    shards = [list(RankShard(items, rank, 2)) for rank in range(2)]
    assert shards == [[0, 2, 4], [1, 3]]
    one = [RankShard([0], rank, 3) for rank in range(3)]
    assert [list(s) for s in one] == [[0], [], []] and [len(s) for s in one] == [1, 1, 1]

    assert RankShard.of(items, None) is None and list(RankShard.of(items, FakeTrainer(1, 2))) == [1, 3]
    assert RankShard.of(items, FakeTrainer(0, 1)) is None  # one process: the loader's default

    class Stream(torch.utils.data.IterableDataset):  # WebDataset shards split themselves by rank and worker
        def __iter__(self):
            return iter(items)

    assert RankShard.of(Stream(), FakeTrainer(1, 2)) is None


def test_limit_keeps_the_first_images_in_path_order_before_finished_ones_are_skipped():
    """data.limit=N: the first N images by relative path, the same subset on every rerun (finished ones are then
    skipped: a rerun does not reach further into the folder); a limit that is no count is one line."""
    dm = FolderDataModule(resolution=32, limit=3)
    dm.setup()
    assert [i for i, _, _ in dm.dataset.items] == ["astronaut", "chelsea", "coffee"]
    rerun = FolderDataModule(resolution=32, limit=3, exclude={"astronaut"})
    rerun.setup()
    assert [i for i, _, _ in rerun.dataset.items] == ["chelsea", "coffee"]
    for bad in (0, -2, "3", 2.5, True):
        with pytest.raises(PreciseInvError, match="data.limit must be a positive integer"):
            FolderDataModule(resolution=32, limit=bad)
