"""Our Euler flow step equals FlowMatchEulerDiscreteScheduler.step; schedule and parameterisation are consistent."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from preciseinv.samplers import EulerFlowSampler, build_flow_schedule


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("num_steps", [1, 2, 4])
def test_step_matches_diffusers(shift, num_steps):
    ref = FlowMatchEulerDiscreteScheduler(shift=shift)
    ref.set_timesteps(num_steps)
    sampler = EulerFlowSampler(build_flow_schedule(ref.config, num_steps))
    torch.testing.assert_close(torch.tensor(sampler.schedule.timesteps, dtype=torch.float32),
                               ref.timesteps.flip(0).float())
    x = torch.randn(2, 4, 8, 8)
    for i, t in enumerate(ref.timesteps):  # diffusers walks from the noisiest step down
        k = num_steps - 1 - i
        v = torch.randn(2, 4, 8, 8)
        expected = ref.step(v, t, x).prev_sample
        torch.testing.assert_close(sampler.step(v, k, x), expected, rtol=1e-5, atol=1e-5)
        x = expected


def test_state_noise_and_exact_inversion_for_constant_velocity():
    sampler = EulerFlowSampler(build_flow_schedule(FlowMatchEulerDiscreteScheduler(shift=3.0).config, 3))
    x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    for k in range(3):
        torch.testing.assert_close(sampler.noise(x0, sampler.state(x0, eps, k), k), eps, rtol=1e-4, atol=1e-4)
    v = eps - x0  # the straight path's velocity: Euler is exact on it, forwards and backwards
    denoiser = lambda x, t, c: v  # noqa: E731
    x = x0
    for k in range(3):
        x = sampler.invert_step(denoiser, x, k)
    torch.testing.assert_close(x, sampler.state(x0, eps, 2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sampler.sample(denoiser, x), x0, rtol=1e-4, atol=1e-4)
