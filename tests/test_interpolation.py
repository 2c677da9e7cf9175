import math

import pytest
import torch

from preciseinv.interpolation import lerp, path, slerp


def test_endpoints_and_norm_statistics():
    torch.manual_seed(0)
    a, b = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    frames = path(a, b, 9)
    torch.testing.assert_close(frames[0], a)
    torch.testing.assert_close(frames[-1], b)
    # slerp keeps a Gaussian latent's norm (and per-element std) where lerp shrinks it mid-way
    mid_s, mid_l = slerp(a, b, 0.5), lerp(a, b, 0.5)
    assert abs(mid_s.std().item() - 1) < 0.05
    assert abs(mid_l.std().item() - 1 / math.sqrt(2)) < 0.05
    na, nb = a.flatten(1).norm(dim=1), b.flatten(1).norm(dim=1)
    for f in frames:  # every frame's norm stays between the endpoints' (lerp would dip ~30% mid-way)
        n = f.flatten(1).norm(dim=1)
        assert (n >= torch.minimum(na, nb) * 0.999).all() and (n <= torch.maximum(na, nb) * 1.001).all()


def test_parallel_inputs_fall_back_to_lerp():
    a = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(slerp(a, 2 * a, 0.5), 1.5 * a)


def test_frames_must_be_two_or_more():
    with pytest.raises(ValueError):
        path(torch.zeros(1, 1), torch.zeros(1, 1), 1)


def test_latents_of_different_shapes_are_refused_with_the_fix():
    import pytest

    from preciseinv.errors import PreciseInvError

    with pytest.raises(PreciseInvError, match=r"different shapes \(4, 8, 8\) and \(4, 8, 12\).*same size"):
        path(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 12), 3)
