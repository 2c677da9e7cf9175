"""Our DDIM step equals diffusers' DDIMScheduler.step; state/noise and the inversion step are consistent."""

import pytest
import torch
from diffusers import DDIMScheduler

from preciseinv.samplers import DDIMSampler, build_schedule

SD_CONFIG = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                 set_alpha_to_one=False, steps_offset=1)


def scheduler(prediction_type="epsilon", spacing="leading", **kw):
    return DDIMScheduler(**{**SD_CONFIG, **kw}, prediction_type=prediction_type, timestep_spacing=spacing)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("num_steps", [1, 2, 5])
@pytest.mark.parametrize("alpha_to_one", [False, True])
def test_step_matches_diffusers(prediction_type, spacing, num_steps, alpha_to_one):
    ref = scheduler(prediction_type, spacing, set_alpha_to_one=alpha_to_one)
    ref.set_timesteps(num_steps)
    sampler = DDIMSampler(build_schedule(ref.config, num_steps), prediction_type)
    assert list(sampler.schedule.timesteps) == sorted(int(t) for t in ref.timesteps)
    gen = torch.Generator().manual_seed(0)
    for k in range(num_steps):
        t = sampler.schedule.timesteps[k]
        x = torch.randn(2, 4, 8, 8, generator=gen)
        out = torch.randn(2, 4, 8, 8, generator=gen)
        expected = ref.step(out, t, x, eta=0.0).prev_sample
        torch.testing.assert_close(sampler.step(out, k, x), expected, rtol=1e-4, atol=1e-5)


def test_clip_sample_matches_diffusers():
    ref = scheduler(clip_sample=True, clip_sample_range=0.5)
    ref.set_timesteps(3)
    sampler = DDIMSampler(build_schedule(ref.config, 3), "epsilon", clip_sample=0.5)
    x, out = torch.randn(1, 3, 4, 4) * 3, torch.randn(1, 3, 4, 4)
    t = sampler.schedule.timesteps[2]
    torch.testing.assert_close(sampler.step(out, 2, x), ref.step(out, t, x).prev_sample, rtol=1e-4, atol=1e-5)


def test_timestep_override_and_spacing_override():
    config = scheduler().config
    assert build_schedule(config, 2).timesteps == (1, 501)  # SD: leading, steps_offset=1
    assert build_schedule(config, 2, timestep_spacing="trailing").timesteps == (499, 999)
    assert build_schedule(config, 2, timesteps=[700, 300]).timesteps == (300, 700)


def test_state_and_noise_are_inverse():
    sampler = DDIMSampler(build_schedule(scheduler().config, 4))
    x0, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    for k in range(4):
        torch.testing.assert_close(sampler.noise(x0, sampler.state(x0, eps, k), k), eps, rtol=1e-4, atol=1e-4)


def test_inversion_is_exact_for_a_constant_eps_network():
    """With eps_theta constant the DDIM path is a straight line, so inversion then sampling is exact."""
    sampler = DDIMSampler(build_schedule(scheduler().config, 3))
    eps = torch.randn(1, 4, 8, 8)
    denoiser = lambda x, t, c: eps  # noqa: E731
    x0 = sampler.step(eps, 0, sampler.state(torch.randn(1, 4, 8, 8), eps, 0))  # a state on that path
    x = x0
    for k in range(3):
        x = sampler.invert_step(denoiser, x, k)
    torch.testing.assert_close(sampler.sample(denoiser, x), x0, rtol=1e-4, atol=1e-4)
