"""The preset's speed settings other than compile and precision: ``model.channels_last`` (NHWC weights for a
convolutional denoiser) and ``model.cudnn_benchmark`` (cuDNN's timed algorithm choice, with the working set padded
to few shapes); both change how the network runs, never what the inversion finds."""

import pytest
import torch

from preciseinv.accel.settings import accelerate
from preciseinv.engine import InversionEngine
from preciseinv.methods import PreciseInv
from preciseinv.models import ModelSpec, load_model
from preciseinv.solvers.buckets import is_bucket


@pytest.fixture
def cudnn_benchmark_restored():
    before = torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.benchmark = before


def invert(model, images):
    """(latents, the batch sizes the denoiser was called with)."""
    seen = []
    net = model.modules[model.denoiser_name]
    hook = net.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0].shape[0]), with_kwargs=True)
    try:
        _, result = InversionEngine(model, PreciseInv(eta=1e-4, max_iters=40), 2).invert(images)
    finally:
        hook.remove()
    return result.latent, seen


def test_cudnn_benchmark_pads_the_working_set_and_finds_the_same_latents(tiny_sd, cudnn_benchmark_restored):
    """The preset's setting (as fit loads it): cuDNN's benchmark mode on, the UNet marked for few shapes, so the
    shrinking working set is padded to bucket sizes; the latents are the plain model's."""
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(0)
    images = torch.rand(12, 3, 32, 32) * 2 - 1
    plain = ModelSpec(name="tiny", path=str(tiny_sd)).load()
    tuned = ModelSpec(name="tiny", path=str(tiny_sd), cudnn_benchmark=True).load()
    assert torch.backends.cudnn.benchmark and tuned.static_shapes and not plain.static_shapes
    (latent, seen), (tuned_latent, tuned_seen) = invert(plain, images), invert(tuned, images)
    odd, tuned_odd = {n for n in seen if not is_bucket(n)}, {n for n in tuned_seen if not is_bucket(n)}
    assert tuned_odd < odd, (odd, tuned_odd)  # fewer shapes: fewer searches
    torch.testing.assert_close(tuned_latent, latent, rtol=1e-4, atol=1e-4)


def test_cudnn_benchmark_leaves_a_network_without_convolutions_unpadded(tiny_flux, cudnn_benchmark_restored):
    model = accelerate(load_model(str(tiny_flux)), cudnn_benchmark=True)
    assert torch.backends.cudnn.benchmark and not model.static_shapes  # FLUX's transformer: linear layers only


def test_channels_last_makes_a_unets_convolutions_nhwc_and_inverts_alike(tiny_sd, tiny_flux):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    plain, nhwc = (ModelSpec(name="tiny", path=str(tiny_sd), channels_last=flag).load() for flag in (False, True))
    convs = [m for m in nhwc.modules[nhwc.denoiser_name].modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    torch.testing.assert_close(invert(nhwc, images)[0], invert(plain, images)[0], rtol=1e-4, atol=1e-4)
    flux = accelerate(load_model(str(tiny_flux)), channels_last=True)  # no convolutions: nothing to change
    assert not any(isinstance(m, torch.nn.Conv2d) for m in flux.modules[flux.denoiser_name].modules())
