"""The learned start's judge solves each held-out pair as a run would, the retry's choice included."""

from functools import partial

import torch
from diffusers import DDIMScheduler

from preciseinv.inits import Start
from preciseinv.inits.judge import _outcome
from preciseinv.methods import PreciseInv
from preciseinv.methods.preciseinv import chain_below
from preciseinv.samplers import DDIMSampler, build_schedule
from preciseinv.solvers import AdamW, FixedPoint
from preciseinv.solvers.base import network_cost


def linear(x, t, cond):  # eps_theta(x, t) = 0.7 x: every DDIM step is linear, its inverse exact
    return 0.7 * x


def test_under_a_retry_the_judge_compares_the_two_solutions_by_where_they_land():
    config = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                           set_alpha_to_one=False, steps_offset=1).config
    s, x0 = DDIMSampler(build_schedule(config, 2)), torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    method = PreciseInv(eta=1e-6, max_iters=3, solver=partial(AdamW, lr=1e-4), retry=partial(FixedPoint),
                        retry_iters=500)  # the first solve stalls, the retry converges both samples
    x1 = method.invert(linear, s, x0).states[0]  # x*_1: step 1's target
    start = Start(s.invert_step(linear, x1, 1), torch.ones(2, dtype=torch.long), ["ddim"] * 2)
    cost, converged = _outcome(method, linear, s, 1, start, x0, x1, None, None)
    _, run = method.solve(linear, s, x0, x1, 1, start.x, below=partial(chain_below, linear, s, None, [None], 1))
    _, by_residual = method.solve(linear, s, x0, x1, 1, start.x)
    assert converged.all() and run.converged.all()
    assert torch.equal(cost, 1 + network_cost(run.nfe_forward, run.nfe_backward))  # the start's call + the run's
    # the landing comparison's forwards (mu_1 and the step under it, for each of the two solutions) are counted
    assert torch.equal(run.nfe_forward - by_residual.nfe_forward, torch.full((2,), 4))

