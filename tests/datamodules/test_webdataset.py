import io

import pytest
import webdataset as wds
from PIL import Image

from preciseinv.datamodules.webdataset import ShardSamples, WebDataModule, expand_urls
from preciseinv.errors import PreciseInvError


def png_bytes(color=(10, 200, 30)):
    buf = io.BytesIO()
    Image.new("RGB", (20, 12), color).save(buf, format="PNG")
    return buf.getvalue()


def write_shards(folder, n_shards=4, per_shard=3):
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    for s in range(n_shards):
        with wds.TarWriter(str(folder / f"shard-{s:06d}.tar")) as sink:
            for i in range(per_shard):
                key = f"s{s}_{i}"
                sink.write({"__key__": key, "png": png_bytes(), "txt": f"caption {key}".encode()})
                keys.append(key)
    return keys


def test_every_sample_read_once_across_ranks_and_workers(tmp_path, monkeypatch):
    keys = write_shards(tmp_path)
    urls = expand_urls(str(tmp_path / "shard-{000000..000003}.tar"))
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = WebDataModule(urls=urls, resolution=8, batch_size=2, num_workers=2, caption_key="txt")
        for batch in dm.predict_dataloader():
            seen += batch["id"]
            assert batch["prompt"][0].startswith("caption ")
    assert sorted(seen) == sorted(keys)


def test_bad_members_become_failures_and_keys_are_made_safe(tmp_path):
    with wds.TarWriter(str(tmp_path / "bad.tar")) as sink:
        sink.write({"__key__": "ok", "png": png_bytes()})
        sink.write({"__key__": "corrupt", "jpg": b"\xff\xd8 nope"})
        sink.write({"__key__": "textonly", "txt": b"no image here"})
        sink.write({"__key__": "empty", "png": b""})
    ds = ShardSamples([str(tmp_path / "bad.tar")], resolution=8)
    samples = {s["id"]: s for s in ds}
    assert samples["ok"]["image"].shape == (3, 8, 8)
    assert "error" in samples["corrupt"] and "no image" in samples["textonly"]["error"]
    said = samples["corrupt"]["error"]  # named by its shard and key, not by a Python stream object
    assert said == f"UnidentifiedImageError: cannot identify image file '{tmp_path / 'bad.tar'}#corrupt'"
    assert samples["empty"]["error"] == "ValueError: the file is empty (0 bytes)"  # as an empty file's


def test_missing_shards_are_a_clear_error(tmp_path):
    with pytest.raises(PreciseInvError, match="shard\\(s\\) not found"):
        expand_urls(str(tmp_path / "x-{0..3}.tar"))
