"""``model.compile``: a compiled denoiser runs the same inversion through the padded working set, with few graphs."""

import pytest
import torch

from preciseinv.accel.settings import accelerate, compile_options
from preciseinv.engine import InversionEngine
from preciseinv.errors import PreciseInvError
from preciseinv.methods import PreciseInv
from preciseinv.models import load_model


def test_compile_values_map_to_torch_compile_options():
    assert compile_options(True) == {} and compile_options("true") == {}
    assert compile_options("reduce-overhead") == {"mode": "reduce-overhead"}
    assert compile_options("aot_eager") == {"backend": "aot_eager"}
    with pytest.raises(PreciseInvError, match="model.compile must be"):
        compile_options("fastest")


def test_compiled_denoiser_inverts_like_the_eager_one(tiny_sd):
    """Dynamo traces the tiny UNet (the ``eager`` backend: the same graphs inductor would get, without C++ builds);
    the solver pads its working set to bucket sizes, and the graphs stay within dynamo's default cache of 8."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    images = torch.rand(5, 3, 32, 32) * 2 - 1
    latents = {}
    for compile in (False, "eager"):
        model = load_model(str(tiny_sd))
        accelerate(model, compile)
        assert model.static_shapes == bool(compile)
        torch._dynamo.reset()
        counters.clear()
        _, result = InversionEngine(model, PreciseInv(eta=1e-3, max_iters=20), 2).invert(images)
        latents[compile] = result.latent
        if compile:
            assert 0 < counters["stats"]["unique_graphs"] <= 8, dict(counters["stats"])
    torch.testing.assert_close(latents["eager"], latents[False], rtol=1e-4, atol=1e-4)
