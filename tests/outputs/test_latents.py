import os

import pytest
import torch

from preciseinv.errors import PreciseInvError
from preciseinv.outputs import atomic_write, load_latent, save_latent


def test_latent_roundtrip_with_metadata(tmp_path):
    latent = torch.randn(4, 8, 8)
    meta = {"model": {"source": "x"}, "schedule": {"timesteps": [1, 501]}, "eta": 1e-3}
    save_latent(tmp_path / "a" / "b.safetensors", latent, meta)
    tensors, got = load_latent(tmp_path / "a" / "b.safetensors")
    assert torch.equal(tensors["latent"], latent) and got == meta
    assert os.listdir(tmp_path / "a") == ["b.safetensors"]  # no temporary left behind


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_foreign_files_are_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(PreciseInvError, match="not a preciseinv latent"):
        load_latent(tmp_path / "other.safetensors")
    with pytest.raises(PreciseInvError, match="does not exist"):
        load_latent(tmp_path / "missing.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00not safetensors at all")
    with pytest.raises(PreciseInvError, match="not a readable latent file"):
        load_latent(tmp_path / "garbage.safetensors")
    save_latent(tmp_path / "ok.safetensors", torch.randn(4, 8, 8), {"m": 1})
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "torn.safetensors").write_bytes(data[: len(data) // 2])  # a copy cut short
    with pytest.raises(PreciseInvError, match="not a readable latent file"):
        load_latent(tmp_path / "torn.safetensors")
