"""EasyInv: DDIM inversion with latent blending over its window (empty at few steps with its defaults)."""

import torch
from diffusers import DDIMScheduler

from preciseinv.methods import DDIMInversion, EasyInv
from preciseinv.samplers import DDIMSampler, build_schedule


def sampler(num_steps):
    config = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1).config
    return DDIMSampler(build_schedule(config, num_steps))


def denoiser(x, t, cond):
    return 0.5 * torch.tanh(2 * x)


def test_the_window_follows_the_official_condition():
    method = EasyInv()  # SD1.4: start 0.05, length 0.2
    assert [i for i in range(50) if method.blends(i, 50)] == list(range(3, 13))
    assert not any(method.blends(i, T) for T in (2, 4) for i in range(T))  # few steps: no step blended


def test_defaults_at_two_steps_are_ddim_inversion_and_a_window_blends():
    x0 = torch.randn(2, 4, 8, 8)
    s = sampler(2)
    torch.testing.assert_close(EasyInv().invert(denoiser, s, x0).latent, DDIMInversion().invert(denoiser, s, x0).latent)
    s = sampler(5)
    blended = EasyInv(inject_start=0.1, inject_len=0.5).invert(denoiser, s, x0)  # steps 1 and 2
    x_prev, x = x0, None
    for k in range(5):
        x = s.invert_step(denoiser, x_prev, k)
        if k in (1, 2):
            x = 0.5 * x + 0.5 * x_prev
        x_prev = x
    torch.testing.assert_close(blended.latent, x)
    assert blended.nfe_forward.tolist() == [5, 5]
