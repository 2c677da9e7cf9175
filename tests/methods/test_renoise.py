"""ReNoise: zero re-noising iterations is DDIM inversion; re-noising lowers the step residual; regularisers."""

import torch
from diffusers import DDIMScheduler

from preciseinv.methods import DDIMInversion, ReNoise
from preciseinv.methods.renoise import auto_correlation, patch_kl
from preciseinv.samplers import DDIMSampler, build_schedule


def sampler(num_steps=2, prediction_type="epsilon"):
    config = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1,
                           prediction_type=prediction_type).config
    return DDIMSampler(build_schedule(config, num_steps), prediction_type)


def denoiser(x, t, cond):  # a smooth nonlinear network: the DDIM-inversion approximation is visibly off
    return 0.5 * torch.tanh(2 * x) + 0.1 * x.roll(1, dims=-1)


def test_zero_renoising_without_regularisation_is_ddim_inversion():
    for prediction_type in ("epsilon", "v_prediction"):
        s, x0 = sampler(3, prediction_type), torch.randn(2, 4, 8, 8)
        ddim = DDIMInversion().invert(denoiser, s, x0)
        renoise = ReNoise(renoise_steps=0, noise_reg_steps=0).invert(denoiser, s, x0)
        torch.testing.assert_close(renoise.latent, ddim.latent)
        assert renoise.nfe_forward.tolist() == [3, 3] and renoise.nfe_backward.tolist() == [0, 0]


def test_renoising_lowers_the_residual_and_counts_its_calls():
    s, x0 = sampler(2), torch.randn(2, 4, 8, 8)
    ddim = DDIMInversion().invert(denoiser, s, x0)
    renoise = ReNoise(noise_reg_steps=0).invert(denoiser, s, x0)
    assert (renoise.residual[1] < ddim.residual[1] / 10).all()  # re-noising is a fixed-point iteration on x_t
    # t = 1 (< 250): 5 re-noising steps + 1; t = 501: 9 + 1; no regularisation forward
    assert renoise.nfe_forward.tolist() == [6 + 10] * 2
    regularized = ReNoise().invert(denoiser, s, x0)
    assert regularized.nfe_forward.tolist() == [6 + 10 + 2] * 2  # + the forward-noised reference per step
    assert torch.isfinite(regularized.latent).all()


def test_regularisers_are_per_sample_and_vanish_where_they_should():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(2, 4, 32, 32, generator=gen)
    smooth = torch.nn.functional.avg_pool2d(white, 5, 1, 2) * 3
    ac = auto_correlation(torch.stack([white[0], smooth[0]]), torch.Generator().manual_seed(1))
    assert ac.shape == (2,) and ac[0] < ac[1]  # white noise is far less auto-correlated
    kl = patch_kl(white, white)
    assert kl.shape == (2,) and torch.allclose(kl, torch.zeros(2), atol=1e-3)  # up to the formula's 1e-6 guard
    assert (patch_kl(smooth, white) > 1.0).all()
