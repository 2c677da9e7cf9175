"""The start predictor: sized by the state shape, saved and loaded whole, a missing one refused in one line."""

import pytest
import torch

from preciseinv.errors import PreciseInvError
from preciseinv.inits.predictor import SmallUNet, load_predictor, predicted_state
from preciseinv.testing.tiny import save_tiny_predictor

MINI = {"source": "embedded:mini-ddpm", "family": "pixel", "prediction_type": "epsilon", "lora": None,
        "sampler": "ddim", "timesteps": [0.0, 500.0], "state_shape": [3, 32, 32]}


@pytest.mark.parametrize("shape,levels", [((3, 32, 32), 2), ((4, 64, 48), 2), ((4, 4, 4), 1), ((16, 6, 10), 1)])
def test_the_unet_follows_the_state_shape(shape, levels):
    C, h, w = shape
    net = SmallUNet(2 * C, C, (h, w))
    x = torch.randn(2, 2 * C, h, w)
    assert net(x, torch.tensor([0.0, 500.0])).shape == (2, C, h, w) and len(net.down) == levels
    assert sum(p.numel() for p in net.parameters()) < 400_000  # small beside the denoiser (mini: 1.06 M)


def test_untrained_it_predicts_the_ddim_start():
    from preciseinv.models import load_model

    net, sampler = SmallUNet(6, 3, (32, 32)), load_model(None).sampler(2)
    x_prev, x_ddim, eps = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    assert torch.equal(predicted_state(net, sampler, 1, x_prev, x_ddim, eps), x_ddim)


def test_a_saved_predictor_loads_as_it_was(tmp_path):
    folder = save_tiny_predictor(tmp_path / "p", MINI, output_scale=0.1)
    net, info = load_predictor(folder)
    again, _ = load_predictor(folder)
    x = torch.randn(1, 6, 32, 32)
    assert info["identity"] == MINI and torch.equal(net(x, torch.tensor([500.0])), again(x, torch.tensor([500.0])))
    assert not any(p.requires_grad for p in net.parameters())


def test_a_folder_without_a_predictor_is_one_line(tmp_path):
    with pytest.raises(PreciseInvError, match="holds no trained predictor"):
        load_predictor(tmp_path)
