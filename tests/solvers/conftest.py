"""Analytic subproblems for the solver tests: a DDIM sampler and denoisers whose inverse is known."""

import pytest
import torch
from diffusers import DDIMScheduler

from preciseinv.methods import NoiseSubproblem
from preciseinv.samplers import DDIMSampler, build_schedule

C = 0.7  # eps_theta(x, t) = C * x makes every DDIM step linear: mu_k(x) = lam_k * x


def linear_denoiser(x, t, cond):
    return C * x


def ddim(num_steps: int = 2) -> DDIMSampler:
    config = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                           set_alpha_to_one=False, steps_offset=1).config
    return DDIMSampler(build_schedule(config, num_steps))


def lam(s: DDIMSampler, k: int) -> float:
    """mu_k(x) = lam * x under the linear denoiser."""
    a, ap = s.schedule.alphas[k].float(), s.schedule.alphas_prev[k].float()
    return float(ap.sqrt() * (1 - (1 - a).sqrt() * C) / a.sqrt() + (1 - ap).sqrt() * C)


def subproblem(solver, x0, target, eps0, denoiser=linear_denoiser, k=1, sampler=None, cond=None):
    return NoiseSubproblem(sampler or ddim(2), denoiser, k, x0, target, eps0, cond=cond, solver=solver)


@pytest.fixture
def linear_problem():
    """(make(solver) -> NoiseSubproblem, exact eps*): mu(x_t) = target has the closed-form solution."""
    torch.manual_seed(0)
    s = ddim(2)
    x0, target = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    a = s.schedule.alphas[1].float()
    exact = (target / lam(s, 1) - a.sqrt() * x0) / (1 - a).sqrt()  # state(eps*) = target / lam

    def make(solver, eps0=None):
        return subproblem(solver, x0, target, torch.zeros_like(x0) if eps0 is None else eps0, sampler=s)

    return make, exact


def mixing_problem(solver, batch: int = 3) -> NoiseSubproblem:
    """A noise estimate mixing every element of a 32-element sample (eps_theta = A x, A dense and random): a
    Jacobian far from the frozen slope's multiple of the identity, which the plain fixed point diverges on and a
    short Krylov basis cannot model."""
    torch.manual_seed(0)
    x0, target = torch.randn(batch, 2, 4, 4), torch.randn(batch, 2, 4, 4)
    A = torch.randn(32, 32) * 0.5

    def mixing(x, t, cond):
        return (x.flatten(1) @ A.T).view_as(x)

    return subproblem(solver, x0, target, torch.zeros_like(x0), denoiser=mixing)


def bound(problem: NoiseSubproblem):
    """The rule the loop will build for ``problem``, kept (the loop runs this one) to read its state afterwards."""
    rule = problem.configure_optimizers()
    problem.configure_optimizers = lambda: rule
    return rule


@pytest.fixture
def bind_rule():
    """bound(problem) -> the rule the loop will run on it."""
    return bound


@pytest.fixture
def make_mixing_problem():
    """mixing_problem(solver, batch=3)."""
    return mixing_problem


@pytest.fixture
def make_subproblem():
    """subproblem(solver, x0, target, eps0, denoiser=linear, k=1, sampler=DDIM T=2, cond=None)."""
    return subproblem
