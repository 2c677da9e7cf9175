"""The preset's speed settings other than compile and precision: ``model.channels_last`` (NHWC weights for a
convolutional denoiser) and ``model.cudnn_benchmark`` (cuDNN's timed algorithm choice); both change how the network
runs, never what it computes."""

import pytest
import torch

from preciseinv.errors import PreciseInvError
from preciseinv.models import ModelSpec


@pytest.fixture
def torch_flags_restored():
    benchmark, deterministic = torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.backends.cudnn.benchmark = benchmark
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def test_cudnn_benchmark_is_the_process_flag_and_leaves_the_working_set_unpadded(tiny_sd, torch_flags_restored):
    """The preset's setting (as fit loads it) turns cuDNN's benchmark mode on; its per-shape search is paid once
    per process, so the solver does not pad for it (that costs network work at every iteration)."""
    torch.backends.cudnn.benchmark = False
    plain = ModelSpec(name="tiny", path=str(tiny_sd)).load()
    assert not torch.backends.cudnn.benchmark
    tuned = ModelSpec(name="tiny", path=str(tiny_sd), cudnn_benchmark=True).load()
    assert torch.backends.cudnn.benchmark and not tuned.static_shapes and not plain.static_shapes


def test_cudnn_benchmark_with_deterministic_algorithms_is_one_line(tiny_sd, torch_flags_restored):
    """Lightning's trainer.deterministic=true turns deterministic algorithms on before the model loads: the model
    does not silently switch cuDNN's benchmark back on."""
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)
    with pytest.raises(PreciseInvError, match="trainer.deterministic=true"):
        ModelSpec(name="tiny", path=str(tiny_sd), cudnn_benchmark=True).load()
    assert not torch.backends.cudnn.benchmark


def test_channels_last_makes_a_unets_convolutions_nhwc_and_computes_alike(tiny_sd):
    plain, nhwc = (ModelSpec(name="tiny", path=str(tiny_sd), channels_last=flag).load() for flag in (False, True))
    convs = [m for m in nhwc.modules[nhwc.denoiser_name].modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not any(m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
                   for m in plain.modules[plain.denoiser_name].modules() if isinstance(m, torch.nn.Conv2d))
    torch.manual_seed(0)
    x = torch.randn(3, plain.modules["unet"].config.in_channels, 8, 8)
    cond = plain.condition([""] * 3)
    with torch.no_grad():
        torch.testing.assert_close(nhwc.predict(x, 500, cond), plain.predict(x, 500, cond), rtol=1e-5, atol=1e-5)
