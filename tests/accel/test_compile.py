"""``model.compile``: a compiled denoiser runs the same inversion through the padded working set, with few graphs;
``model.compile_scope=regional`` compiles its blocks, each with a dynamic batch."""

import pytest
import torch

from preciseinv.accel.settings import REGIONS, accelerate, accelerate_module, compile_options, regions, uses_cuda_graphs
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
    and the inversion is the eager, unpadded loop's: the same residuals and latents, up to what the default's
    Newton-Krylov phase (steep samples; finite-difference Jacobian products) makes of the last-bit differences
    between kernels at other batch sizes (1e-4 in a latent here)."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    images = torch.rand(12, 3, 32, 32) * 2 - 1  # 12: a bucket size, as data.batch_size=auto picks with CUDA graphs
    runs, sizes = {}, {}  # per compile setting: (latents, per-sample residuals), the batch sizes seen
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
        residuals = torch.tensor([r["residual"] for r in result.per_sample()])
        runs[compile], sizes[compile] = (result.latent, residuals), seen
        if compile:
            assert 0 < counters["stats"]["unique_graphs"] <= 8, dict(counters["stats"])
    odd = {compile: {n for n in seen if not is_bucket(n)} for compile, seen in sizes.items()}
    # padded, fewer shapes: only an exact split the loop would have made anyway, where padding would cost too much
    assert odd["eager"] < odd[False], odd
    (compiled_latent, compiled_residual), (eager_latent, eager_residual) = runs["eager"], runs[False]
    torch.testing.assert_close(compiled_residual, eager_residual, rtol=1e-2, atol=1e-9)
    torch.testing.assert_close(compiled_latent, eager_latent, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_sd3", "tiny_flux"])
def test_regional_compile_finds_each_familys_blocks(fixture, request):
    """The outermost blocks of each family: a UNet's ResNet / attention / resampling blocks, SD3's joint blocks,
    FLUX's double and single blocks; none inside another."""
    model = load_model(str(request.getfixturevalue(fixture)))
    net = model.modules[model.denoiser_name]
    blocks = regions(net)
    kinds = {type(b).__name__ for b in blocks}
    expected = {"tiny_sd": {"ResnetBlock2D", "Transformer2DModel", "Downsample2D", "Upsample2D"},
                "tiny_sd3": {"JointTransformerBlock"},
                "tiny_flux": {"FluxTransformerBlock", "FluxSingleTransformerBlock"}}[fixture]
    assert kinds == expected
    inner = [m for b in blocks for m in b.modules() if m is not b]
    assert not any(m is b for m in inner for b in blocks)  # outermost only: no block is compiled twice
    assert len(blocks) == sum(type(m).__name__ in REGIONS for m in net.modules()
                              if not any(m is i for i in inner))


def test_regional_scope_errors_are_one_line():
    with pytest.raises(PreciseInvError, match="compile_scope must be full or regional"):
        accelerate_module(torch.nn.Linear(2, 2), "eager", scope="blocks")
    with pytest.raises(PreciseInvError, match="Sequential has none of the blocks"):
        accelerate_module(torch.nn.Sequential(torch.nn.Linear(2, 2)), "eager", scope="regional")


@pytest.mark.parametrize("fixture,scope", [("tiny_sd", "regional"), ("tiny_sdxl", "full")])  # SDXL: nested arguments
def test_a_compiled_denoiser_has_a_dynamic_batch_from_the_start(fixture, scope, request):
    """AOTAutograd (``aot_eager``: the forward and backward graphs inductor would get, without C++ builds): after
    the first batch size, other sizes of its range reuse the graphs (the batch is marked dynamic, nested arguments
    such as SDXL's ``added_cond_kwargs`` included; every other size is static): a working set shrinking within the
    range compiles nothing more (a batch of one, and sizes past a test the network makes of its batch, have graphs
    of their own)."""
    from torch._dynamo.utils import counters

    model = load_model(str(request.getfixturevalue(fixture)))
    accelerate(model, "aot_eager", scope=scope)
    torch._dynamo.reset()
    counters.clear()
    text = model.condition([""] * 7)["cond"]
    channels = model.modules["unet"].config.in_channels

    def call(b, grad):
        x = torch.randn(b, channels, 8, 8, requires_grad=grad)
        with torch.set_grad_enabled(grad):
            out = model.predict(x, 500, {"cond": {k: v[:b] for k, v in text.items()}})
        if grad:
            torch.autograd.grad(out.sum(), x)

    for grad in (False, True):
        call(2, grad)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= (2 if scope == "full" else 8)  # a graph per grad mode (and per block shape)
    for b in (3, 5, 7):
        for grad in (False, True):
            call(b, grad)
    assert counters["stats"]["unique_graphs"] == graphs, "a new batch size recompiled"


def test_regional_compile_inverts_like_the_eager_model(tiny_sd):
    """The blocks compiled (``aot_eager``), the glue eager: the inversion, whose working set shrinks as samples
    converge, gives the eager model's latents (the backward through compiled blocks: the dynamic-batch test)."""
    torch.manual_seed(0)
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    latents, iters = {}, {}
    for compile in (False, "aot_eager"):
        model = load_model(str(tiny_sd))
        accelerate(model, compile, scope="regional")
        _, result = InversionEngine(model, PreciseInv(eta=1e-3, max_iters=12), 2).invert(images)
        latents[compile], iters[compile] = result.latent, result.iters[-1].tolist()
    assert len(set(iters[False])) >= 3 and min(iters[False]) < 12  # samples leave the batch at different iterations
    assert iters["aot_eager"] == iters[False]
    torch.testing.assert_close(latents["aot_eager"], latents[False], rtol=1e-4, atol=1e-4)
