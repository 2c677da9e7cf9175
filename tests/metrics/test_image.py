import math

import pytest
import torch

from preciseinv.metrics import ImageMetrics, psnr


def test_psnr_on_the_8bit_scale():
    target = torch.zeros(2, 3, 16, 16)
    pred = target.clone()
    pred[1] += 0.2  # 0.1 on the [0, 1] scale -> MSE 0.01 -> 20 dB
    values = psnr(pred, target)
    assert values[0] > 100 and math.isclose(values[1].item(), 20.0, rel_tol=1e-4)


def no_torchmetrics_lpips(monkeypatch):
    """As on a machine without torchvision: torchmetrics' LPIPS cannot be built."""
    import torchmetrics.image.lpip as lpip

    def unavailable(*args, **kwargs):
        raise ModuleNotFoundError("LPIPS metric requires that torchvision is installed")

    monkeypatch.setattr(lpip, "LearnedPerceptualImagePatchSimilarity", unavailable)


def test_metrics_per_image_and_lpips_is_null_without_weights(monkeypatch, tmp_path):
    no_torchmetrics_lpips(monkeypatch)
    monkeypatch.setenv("PRECISEINV_LPIPS_WEIGHTS", str(tmp_path / "absent.safetensors"))
    metrics = ImageMetrics(lpips=True)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    out = metrics(x, x)
    assert out["psnr"].shape == (3,) and torch.allclose(out["ssim"], torch.ones(3), atol=1e-4)
    noisy = metrics((x + 0.3 * torch.randn_like(x)).clamp(-1, 1), x)
    assert (noisy["ssim"] < 0.9).all() and (noisy["psnr"] < out["psnr"]).all()
    assert out["lpips"] is None and noisy["lpips"] is None


def test_lpips_without_weights_is_one_line_once(monkeypatch, tmp_path, capsys):
    import importlib.util

    from preciseinv.metrics import image

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchmetrics' LPIPS loads here")
    monkeypatch.setenv("PRECISEINV_LPIPS_WEIGHTS", str(tmp_path / "none.safetensors"))
    monkeypatch.setattr(image, "_LPIPS_WARNED", False)
    assert image.ImageMetrics()(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))["lpips"] is None
    image.ImageMetrics()  # a second instance in the same run: no second notice
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("preciseinv: LPIPS is off")
    assert str(tmp_path / "none.safetensors") in lines[0] and "python -m preciseinv.metrics.lpips" in lines[0]
