"""The default solver converges at least as many images as the paper's AdamW, at the same cap, on tiny models of
every family built with seeds and sizes the solvers were not tuned on (the held-out suite's promise, small)."""

from functools import partial

import pytest
import torch

from preciseinv.engine import InversionEngine
from preciseinv.methods import PreciseInv
from preciseinv.models import load_model
from preciseinv.solvers import AdamW, Hybrid

# family -> (builder, its arguments, the preset's AdamW lr, weight seed, width)
FAMILIES = {
    "sd": ("save_tiny_sd", {}, 0.1, 3, 1), "sd-v": ("save_tiny_sd", {"prediction_type": "v_prediction"}, 0.1, 4, 2),
    "lcm": ("save_tiny_lcm", {}, 0.05, 3, 1), "sdxl": ("save_tiny_sdxl", {}, 0.05, 4, 2),
    "sd3": ("save_tiny_sd3", {"with_t5": False}, 0.025, 3, 2), "pixel": ("save_tiny_pixel", {}, 0.1, 4, 1),
    "pixel-clip": ("save_tiny_pixel", {"clip_sample": True}, 0.1, 3, 2),
}


def converged(model, solver, images) -> float:
    engine = InversionEngine(model, PreciseInv(1e-3, 80, solver), 2)
    _, result = engine.invert(images)
    return torch.stack(result.converged).all(0).float().mean().item()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_default_converges_at_least_as_often_as_adamw(family, tmp_path):
    import preciseinv.testing.tiny as tiny

    builder, kwargs, lr, seed, width = FAMILIES[family]
    path = getattr(tiny, builder)(tmp_path, seed=seed, width=width, **kwargs)
    model = load_model(str(path))
    g = torch.Generator().manual_seed(seed)
    images = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=g) * 2 - 1, size=model.resolution,
                                             mode="bicubic").clamp(-1, 1)  # smooth random images
    paper = converged(model, partial(AdamW, lr=lr), images)
    default = converged(model, partial(Hybrid, lr=lr), images)
    assert default >= paper, (family, default, paper)
    assert default >= 0.75, (family, default)
