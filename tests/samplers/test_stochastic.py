"""LCM and DDPM steps equal diffusers' LCMScheduler.step / DDPMScheduler.step given the same injected noise."""

import pytest
import torch
from diffusers import DDPMScheduler, LCMScheduler

from preciseinv.samplers import DDPMSampler, LCMSampler, build_noise_schedule

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def run_reference(ref, sampler, prediction_type):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    for i, t in enumerate(ref.timesteps):  # noisiest first
        k = sampler.num_steps - 1 - i
        out = torch.randn(2, 4, 8, 8, generator=gen)
        g_ref = torch.Generator().manual_seed(100 + i)
        expected = ref.step(out, t, x, generator=g_ref).prev_sample
        z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(100 + i))  # what diffusers drew
        torch.testing.assert_close(sampler.step(out, k, x, z if k > 0 else None), expected, rtol=1e-4, atol=1e-4)
        x = expected


@pytest.mark.parametrize("num_steps", [1, 2, 4])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_lcm_step_matches_diffusers(num_steps, prediction_type):
    ref = LCMScheduler(**SD, set_alpha_to_one=False, prediction_type=prediction_type)
    ref.set_timesteps(num_steps)
    sampler = LCMSampler(build_noise_schedule("lcm", ref.config, num_steps), prediction_type)
    assert list(sampler.schedule.timesteps) == sorted(int(t) for t in ref.timesteps)
    run_reference(ref, sampler, prediction_type)


@pytest.mark.parametrize("num_steps", [1, 2, 4])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddpm_step_matches_diffusers(num_steps, spacing):
    ref = DDPMScheduler(**SD, timestep_spacing=spacing, clip_sample=False)
    ref.set_timesteps(num_steps)
    sampler = DDPMSampler(build_noise_schedule("ddpm", ref.config, num_steps))
    run_reference(ref, sampler, "epsilon")
