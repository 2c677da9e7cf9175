"""GNRI: one iteration is DDIM inversion; its Newton-Raphson iterations never keep a worse candidate."""

import torch
from diffusers import DDIMScheduler

from preciseinv.methods import GNRI, DDIMInversion
from preciseinv.samplers import DDIMSampler, build_schedule


def sampler(num_steps=2):
    config = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1).config
    return DDIMSampler(build_schedule(config, num_steps))


def denoiser(x, t, cond):
    return 0.5 * torch.tanh(2 * x) + 0.1 * x.roll(1, dims=-1)


def test_one_iteration_is_ddim_inversion():
    s, x0 = sampler(3), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(GNRI(n_iters=1).invert(denoiser, s, x0).latent,
                               DDIMInversion().invert(denoiser, s, x0).latent)


def test_newton_iterations_lower_the_step_residual_and_count_calls():
    s, x0 = sampler(2), torch.randn(2, 4, 8, 8)
    ddim = DDIMInversion().invert(denoiser, s, x0)
    gnri = GNRI(n_iters=6, alpha=0.0).invert(denoiser, s, x0)
    assert (gnri.residual[1] < ddim.residual[1]).all()
    assert gnri.nfe_forward.tolist() == [12, 12] and gnri.nfe_backward.tolist() == [0, 0]
    default = GNRI().invert(denoiser, s, x0)  # the official 2 iterations, alpha 0.1
    assert default.nfe_forward.tolist() == [4, 4] and torch.isfinite(default.latent).all()
