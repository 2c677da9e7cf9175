"""``model.compile``: a compiled denoiser runs the same inversion through the padded working set, with few graphs."""

import pytest
import torch

from preciseinv.accel.settings import accelerate, compile_options, uses_cuda_graphs
from preciseinv.engine import InversionEngine
from preciseinv.errors import PreciseInvError
from preciseinv.methods import PreciseInv
from preciseinv.models import load_model
from preciseinv.solvers.buckets import is_bucket


def test_compile_values_map_to_torch_compile_options():
    assert compile_options(True) == {} and compile_options("true") == {}
    assert compile_options("reduce-overhead") == {"mode": "reduce-overhead"}
    assert compile_options("aot_eager") == {"backend": "aot_eager"}
    with pytest.raises(PreciseInvError, match="model.compile must be"):
        compile_options("fastest")
    # only CUDA graphs (one recording per shape) need the padded working set; inductor goes dynamic by itself
    assert uses_cuda_graphs("reduce-overhead") and uses_cuda_graphs("max-autotune") and uses_cuda_graphs("cudagraphs")
    assert not uses_cuda_graphs(True) and not uses_cuda_graphs("max-autotune-no-cudagraphs")
    assert not uses_cuda_graphs("eager") and not uses_cuda_graphs(False)


def test_compiled_denoiser_inverts_like_the_eager_one_through_the_padded_loop(tiny_sd):
    """Dynamo traces the tiny UNet (the ``eager`` backend: the graphs inductor would get, without C++ builds); the
    padded loop (as with CUDA graphs) hands it fewer shapes, the graphs stay within dynamo's default cache of 8,
    and the latents are the eager, unpadded loop's."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    images = torch.rand(12, 3, 32, 32) * 2 - 1  # 12: a bucket size, as data.batch_size=auto picks with CUDA graphs
    latents, sizes = {}, {}
    for compile in (False, "eager"):
        model = load_model(str(tiny_sd))
        accelerate(model, compile)
        assert not model.static_shapes  # no CUDA graphs with either: padding is asked for below
        seen, predict = [], model.predict
        model.predict = lambda x, t, cond: seen.append(x.shape[0]) or predict(x, t, cond)
        torch._dynamo.reset()
        counters.clear()
        method = PreciseInv(eta=1e-4, max_iters=40, buckets=bool(compile))
        _, result = InversionEngine(model, method, 2).invert(images)
        latents[compile], sizes[compile] = result.latent, seen
        if compile:
            assert 0 < counters["stats"]["unique_graphs"] <= 8, dict(counters["stats"])
    odd = {compile: {n for n in seen if not is_bucket(n)} for compile, seen in sizes.items()}
    # padded, fewer shapes: only an exact split the loop would have made anyway, where padding would cost too much
    assert odd["eager"] < odd[False], odd
    torch.testing.assert_close(latents["eager"], latents[False], rtol=1e-4, atol=1e-4)
