"""EDICT and BDIA invert exactly: their own samplers return x0 to float precision, from the latent file too."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

from preciseinv import Inverter, reconstruct_file
from preciseinv.errors import PreciseInvError
from preciseinv.methods import BDIA, EDICT, DDIMInversion
from preciseinv.samplers import DDIMSampler, DDPMSampler, EulerFlowSampler, build_flow_schedule, build_noise_schedule
from preciseinv.samplers import build_schedule

SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)


def denoiser(x, t, cond):  # nonlinear, so DDIM inversion is visibly inexact
    return 0.6 * torch.tanh(2 * x) + 0.1 * x.roll(1, dims=-1)


def samplers():
    yield DDIMSampler(build_schedule(DDIMScheduler(**SD).config, 3))
    yield DDIMSampler(build_schedule(DDIMScheduler(**SD).config, 2), "v_prediction")
    yield EulerFlowSampler(build_flow_schedule(FlowMatchEulerDiscreteScheduler(shift=3.0).config, 3))


@pytest.mark.parametrize("method", [EDICT(), BDIA(), BDIA(gamma=1.0)], ids=["edict", "bdia", "bdia-1"])
@pytest.mark.parametrize("sampler", list(samplers()), ids=["ddim", "ddim-v", "euler"])
def test_reconstruction_is_exact(method, sampler):
    torch.manual_seed(0)
    x0 = torch.randn(2, 4, 8, 8, dtype=torch.float64).float()
    result = method.invert(denoiser, sampler, x0)
    recon = method.sample(denoiser, sampler, result.latent, None, None, result.companion)
    torch.testing.assert_close(recon, x0, rtol=0, atol=1e-4)  # float32 round-off only
    ddim = DDIMInversion().invert(denoiser, sampler, x0)
    assert (sampler.sample(denoiser, ddim.latent) - x0).abs().max() > 1e-2  # where DDIM inversion is not exact
    per_call = 2 if method.name == "edict" else 1
    assert result.nfe_forward.tolist() == [per_call * sampler.num_steps] * 2


def test_noise_injecting_samplers_are_refused():
    sampler = DDPMSampler(build_noise_schedule("ddpm", DDPMScheduler(**SD).config, 2))
    for method in (EDICT(), BDIA()):
        with pytest.raises(PreciseInvError, match="deterministic, unclipped sampler"):
            method.invert(denoiser, sampler, torch.zeros(1, 4, 8, 8))


@pytest.mark.parametrize("name", ["edict", "bdia"])
def test_latent_files_carry_the_companion_and_reconstruct_exactly(name, tmp_path):
    inv = Inverter("mini", method=name, device="cpu")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    res = inv.invert(images)
    recon = inv.reconstruct(res.latents, companion=res.result.companion)
    torch.testing.assert_close(recon, images, rtol=0, atol=1e-3)
    inv.save(tmp_path / "a.safetensors", res, 1, sample_id="a")
    image, meta = reconstruct_file(tmp_path / "a.safetensors", device="cpu")
    assert meta["method"] == name and meta["reconstruction"] == name
    torch.testing.assert_close(image, images[1], rtol=0, atol=1e-3)
    with pytest.raises(PreciseInvError, match="companion"):
        inv.reconstruct(res.latents)
