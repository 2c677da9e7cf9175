"""Precision names: Lightning's that this engine runs, and the "true" half precisions (weights in half, no
autocast, the solver in fp32) in the Python API."""

import pytest
import torch

from preciseinv.accel.settings import AUTOCAST, TRUE_HALF, autocast, check_precision
from preciseinv.errors import PreciseInvError


def test_precision_names():
    assert check_precision(None) == "32-true" and check_precision(32) == "32"
    assert check_precision("bf16-mixed") == "bf16-mixed" and check_precision("16-true") == "16-true"
    assert check_precision("fp16", also=tuple(AUTOCAST)) == "fp16"  # the API's short names
    for bad in ("64-true", "transformer-engine", "fp16", "half"):
        with pytest.raises(PreciseInvError, match=f"precision={bad} is not one this engine runs"):
            check_precision(bad)
    assert TRUE_HALF == {"bf16-true": "bfloat16", "16-true": "float16"}
    assert isinstance(autocast("cpu", "bf16-true"), type(autocast("cpu", "32-true")))  # no autocast


def test_api_true_half_loads_half_weights_and_keeps_the_solver_in_fp32():
    from preciseinv.api import Inverter

    inv = Inverter("mini", device="cpu", precision="bf16-true", max_iters=50)
    assert inv.model.dtype == torch.bfloat16
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    inversion = inv.invert(images)
    assert inversion.latents.dtype == torch.float32 and torch.isfinite(inversion.latents).all()
    assert all(c.all() for c in inversion.result.converged)  # the solver reaches eta with bf16 weights: its own state is fp32
    with pytest.raises(PreciseInvError, match="a loaded model keeps its own dtype"):
        Inverter(inv.model, device="cpu", precision="bf16-true")
    with pytest.raises(PreciseInvError, match="precision=64-true is not one this engine runs"):
        Inverter("mini", device="cpu", precision="64-true")
