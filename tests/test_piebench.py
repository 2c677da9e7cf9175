"""PIE-Bench: its layout and run-length masks, and the editing metrics (background preservation, CLIP, DINO)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from preciseinv.datamodules.piebench import clean_prompt, decode_mask
from preciseinv.metrics.editing import EditMetrics, background


def test_run_length_masks_decode_as_pie_bench_does():
    mask = decode_mask([5, 3, 22, 2], (6, 6))  # row-major starts and lengths
    inner = mask[1:-1, 1:-1]
    assert mask[0].all() and mask[-1].all() and mask[:, 0].all() and mask[:, -1].all()  # the border, as theirs
    expected = np.zeros(36)
    expected[[5, 6, 7, 22, 23]] = 1
    assert (inner == expected.reshape(6, 6)[1:-1, 1:-1]).all()
    assert clean_prompt("a [red]  car on [the] road") == "a red car on the road"


def test_background_metrics_only_see_the_unedited_region():
    torch.manual_seed(0)
    source = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    edit = source.clone()
    edit[:, :, 4:12, 4:12] = -source[:, :, 4:12, 4:12]  # changed inside the mask only
    out = background(source, edit, mask)
    assert (out["bg_psnr"] > 100).all() and (out["bg_mse"] < 1e-10).all() and out["bg_lpips"] is None
    edit[1, :, 0, 0] += 0.5  # one changed pixel outside
    out = background(source, edit, mask)
    assert out["bg_psnr"][0] > 100 and out["bg_psnr"][1] < 50 and out["bg_ssim"][1] < out["bg_ssim"][0]


def test_clip_and_dino_need_weights_and_say_so_once(tmp_path):
    with pytest.warns(UserWarning, match="unavailable"):
        metrics = EditMetrics(clip=str(tmp_path / "no-clip"), dino=str(tmp_path / "no-dino"))
    x = torch.zeros(1, 3, 32, 32)
    out = metrics(x, x, torch.zeros(1, 1, 32, 32), ["a cat"])
    assert out["clip_whole"] is None and out["clip_edited"] is None and out["structure_distance"] is None


def write_piebench(root, sizes=((48, 48), (40, 40))):
    from PIL import Image

    images = root / "annotation_images" / "0_random_140"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    mapping = {}
    for i, (w, h) in enumerate(sizes):
        name = f"{i:012d}.{'jpg' if i == 0 else 'png'}"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name)
        start = (h // 4) * w + w // 4
        runs = [v for r in range(h // 2) for v in (start + r * w, w // 2)]  # a centred square
        mapping[f"{i:012d}"] = {"image_path": f"0_random_140/{name}", "original_prompt": "a [cat] on a sofa",
                                "editing_prompt": "a [dog] on a sofa", "editing_instruction": "make it a dog",
                                "editing_type_id": "1", "blended_word": "cat dog", "mask": runs}
    mapping["000000000009"] = {"image_path": "0_random_140/missing.jpg", "original_prompt": "x",
                               "editing_prompt": "y", "mask": []}
    (root / "mapping_file.json").write_text(json.dumps(mapping))


@pytest.mark.slow
def test_piebench_edit_run_reports_background_clip_and_structure(tiny_sd, tmp_path):
    from preciseinv.testing.tiny import save_tiny_clip, save_tiny_dino

    write_piebench(tmp_path / "pie")
    clip, dino = save_tiny_clip(tmp_path), save_tiny_dino(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "preciseinv.edit", "data=piebench", f"data.root={tmp_path / 'pie'}",
                           f"model.path={tiny_sd}", "data.resolution=32", "data.num_workers=0", "~logger",
                           f"edit_eval.clip={clip}", f"edit_eval.dino={dino}", f"output_dir={out}"],
                          capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                            "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["000000000000", "000000000001"]
    for r in records:
        assert r["prompt"] == "a cat on a sofa" and r["target"] == "a dog on a sofa"
        assert r["blend_words"] == ["cat", "dog"] and r["editing_type"] == "1"
        assert np.isfinite(r["bg_psnr"]) and 0 <= r["bg_mse"] and -1 <= r["bg_ssim"] <= 1
        assert r["clip_whole"] is not None and r["clip_edited"] is not None and r["structure_distance"] >= 0
        assert (out / r["edit"]).is_file()
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["id"] for f in failures] == ["000000000009"]
    summary = json.loads((out / "summary.json").read_text())
    for key in ("bg_psnr_mean", "bg_ssim_mean", "clip_whole_mean", "structure_distance_mean"):
        assert summary[key] is not None


def test_with_the_hub_off_missing_clip_weights_are_said_at_once(monkeypatch, tmp_path):
    """Hub ids with the hub off or out of reach and nothing cached: the one warning at once, not a minute and a
    half of the hub client's retries."""
    import time

    from huggingface_hub import constants

    from preciseinv.metrics import editing
    from preciseinv.metrics.editing import cached_or_reachable

    monkeypatch.setattr(editing, "_WARNED", set())  # warned once a process: as in a fresh run
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(OSError, match=r"the hub is off \(HF_HUB_OFFLINE=1\) and 'openai/clip-vit-large-patch14' "
                                      "is not in the local cache"):
        cached_or_reachable("openai/clip-vit-large-patch14")
    assert cached_or_reachable(str(tmp_path)) == {}  # a local folder: as it is
    started = time.time()
    with pytest.warns(UserWarning, match="is not in the local cache"):
        EditMetrics(clip="openai/clip-vit-large-patch14", dino="facebook/dino-vitb8")
    assert time.time() - started < 10
