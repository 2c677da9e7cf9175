"""init=ddim is the paper's start: PreciseInv with it is the loop it always was, bit for bit."""

import torch
from diffusers import DDIMScheduler

from preciseinv.inits import DDIMStart
from preciseinv.methods import NoiseSubproblem, PreciseInv
from preciseinv.samplers import DDIMSampler, build_schedule


def sampler(num_steps=3):
    config = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                           set_alpha_to_one=False, steps_offset=1).config
    return DDIMSampler(build_schedule(config, num_steps))


def paper_loop(method: PreciseInv, denoiser, s, x0):
    """The loop written out as it stood before starts were pluggable: DDIM-inversion init, solve, advance."""
    x_prev, nfe = x0, torch.zeros(x0.shape[0], dtype=torch.long)
    states = []
    for k in range(s.num_steps):
        with torch.no_grad():
            x_init = s.invert_step(denoiser, x_prev, k, None)
        problem = NoiseSubproblem(s, denoiser, k, x0, x_prev, s.noise(x0, x_init, k), None, solver=method.solver)
        stats = method.loop.run(problem)
        with torch.no_grad():
            x_prev = problem.state()
        states.append(x_prev)
        nfe += stats.nfe_forward + 1
    return x_prev, nfe, states


def test_the_ddim_start_leaves_the_inversion_unchanged_bit_for_bit():
    torch.manual_seed(0)
    w = torch.randn(4, 4) * 0.5
    denoiser = lambda x, t, c: torch.tanh(torch.einsum("ij,bjhw->bihw", w, x)) * (1 + t / 1000)  # noqa: E731
    s, x0 = sampler(3), torch.randn(3, 4, 8, 8)
    method = PreciseInv(eta=1e-5, max_iters=300)
    assert isinstance(method.init, DDIMStart)  # the default
    result = method.invert(denoiser, s, x0)
    latent, nfe, states = paper_loop(PreciseInv(eta=1e-5, max_iters=300), denoiser, s, x0)
    assert torch.equal(result.latent, latent) and torch.equal(result.nfe_forward, nfe)
    assert len(result.states) == 2 and all(torch.equal(a, b) for a, b in zip(result.states, states[:-1]))
    assert result.init == [["ddim"] * 3] * 3
    assert all(row["init"] == ["ddim"] * 3 for row in result.per_sample())


def test_the_ddim_start_is_one_inversion_step():
    s, x0 = sampler(2), torch.randn(2, 1, 4, 4)
    denoiser = lambda x, t, c: 0.7 * x  # noqa: E731
    start = DDIMStart()(denoiser, s, x0, x0, 1)
    assert torch.equal(start.x, s.invert_step(denoiser, x0, 1)) and start.calls.tolist() == [1, 1]
    assert start.taken == ["ddim", "ddim"]
