"""The fixed-point map of every sampler: its slope is d mu / d x with the network's estimate held fixed, and at
its fixed point mu(x*_t) equals the target."""

from functools import partial

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler, LCMScheduler

from preciseinv.methods import NoiseSubproblem
from preciseinv.samplers import (DDIMSampler, DDPMSampler, EulerFlowSampler, LCMSampler, build_flow_schedule,
                                 build_noise_schedule, build_schedule)
from preciseinv.solvers import FixedPoint, SolverLoop

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def samplers():
    yield "ddim-epsilon", DDIMSampler(build_schedule(DDIMScheduler(**SD, set_alpha_to_one=False).config, 2))
    yield "ddim-v", DDIMSampler(build_schedule(DDIMScheduler(**SD).config, 2), "v_prediction")
    yield "ddim-sample", DDIMSampler(build_schedule(DDIMScheduler(**SD).config, 2), "sample")
    yield "euler", EulerFlowSampler(build_flow_schedule(FlowMatchEulerDiscreteScheduler(shift=3.0).config, 2))
    yield "lcm", LCMSampler(build_noise_schedule("lcm", LCMScheduler(**SD).config, 2))
    yield "ddpm", DDPMSampler(build_noise_schedule("ddpm", DDPMScheduler(**SD).config, 2))


def smooth_eps(x):
    """A mildly nonlinear noise estimate: the fixed-point iteration contracts under every sampler's slope."""
    return 0.3 * torch.tanh(x) + 0.05 * x.roll(1, dims=-1)


def network(sampler, k, eps=smooth_eps):
    """A network predicting what the sampler's prediction type asks for, from the noise estimate ``eps(x)``."""
    kind = getattr(sampler, "prediction_type", "flow")
    if kind == "flow" or kind == "epsilon":
        return lambda x, t, cond: eps(x)
    a = float(sampler.schedule.alphas[k])
    if kind == "sample":  # x0_hat = (x - sqrt(1 - a) eps) / sqrt(a)
        return lambda x, t, cond: (x - (1 - a) ** 0.5 * eps(x)) / a ** 0.5
    return lambda x, t, cond: (eps(x) - (1 - a) ** 0.5 * x) / a ** 0.5  # v, from eps = sqrt(a) v + sqrt(1-a) x


@pytest.mark.parametrize("name,sampler", list(samplers()))
def test_frozen_slope_is_the_step_derivative_with_the_noise_estimate_fixed(name, sampler):
    """A network whose noise estimate (velocity for flow) is a constant, whatever it predicts."""
    fixed = torch.randn(1, 2, 4, 4)
    z = torch.randn(1, 2, 4, 4)
    for k in range(sampler.num_steps):
        net = network(sampler, k, eps=lambda x: fixed)
        x = torch.randn(1, 2, 4, 4, requires_grad=True)
        (g,) = torch.autograd.grad(sampler.step(net(x, None, None), k, x, z).sum(), x)
        torch.testing.assert_close(g, torch.full_like(g, sampler.frozen_slope(k)), rtol=1e-4, atol=1e-5)
        e = torch.randn(1, 2, 4, 4, requires_grad=True)
        (g,) = torch.autograd.grad(sampler.state(torch.randn(1, 2, 4, 4), e, k).sum(), e)
        torch.testing.assert_close(g, torch.full_like(g, sampler.state_gain(k)), rtol=1e-5, atol=1e-6)
    if name == "ddpm":  # the injected noise enters with its standard deviation
        z = z.requires_grad_(True)
        (g,) = torch.autograd.grad(sampler.step(fixed, 1, torch.randn(1, 2, 4, 4), z).sum(), z)
        torch.testing.assert_close(g, torch.full_like(g, sampler.noise_gain(1)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,sampler", list(samplers()))
def test_fixed_point_satisfies_mu_equals_target(name, sampler):
    torch.manual_seed(0)
    x0, target = torch.randn(2, 2, 4, 4) * 0.5, torch.randn(2, 2, 4, 4) * 0.5
    k = 1
    noise = torch.randn_like(x0) if sampler.injects_noise else None
    denoiser = network(sampler, k)
    problem = NoiseSubproblem(sampler, denoiser, k, x0, target, torch.zeros_like(x0), noise=noise,
                              learn_noise=sampler.learn_noise, solver=partial(FixedPoint))
    stats = SolverLoop(eta=1e-12, max_iters=500).run(problem)
    assert stats.converged.all(), (name, stats.residual)
    eps, z = problem.split()
    mu = sampler.step(denoiser(problem.state(), sampler.schedule.timesteps[k], None), k, problem.state(), z)
    torch.testing.assert_close(mu, target, rtol=0, atol=1e-5)
    r = problem.residual(problem.eps.detach(), torch.arange(2))
    step = problem.newton_step(r)  # at the fixed point the map moves nothing
    assert step.abs().max() < 1e-4
    if sampler.learn_noise:  # DDPM: [eps | z], both moved by the minimum-norm correction
        assert problem.eps.shape[1] == 4 and not torch.equal(z, noise)


def _frozen_slope_spectrum_top(problem) -> float:
    """The largest eigenvalue modulus of A = -d newton_step(r) / d eps (the Jacobian in frozen-slope units) of
    the first sample, built in full."""
    eps, idx = problem.eps.detach().clone(), torch.arange(problem.eps.shape[0])

    def correction(e0):
        e = eps.clone()
        e[0] = e0
        return problem.newton_step(problem.residual(e, idx))[0]

    jac = torch.autograd.functional.jacobian(correction, eps[0]).reshape(eps[0].numel(), -1)
    return float(torch.linalg.eigvals(-jac).abs().max())


@pytest.mark.parametrize("scale", [0.8, -0.5])
def test_the_long_step_follows_the_probed_top_of_the_spectrum(make_subproblem, bind_rule, scale):
    """long_step: each sample's power iteration (finite-difference forwards) reads the top of its step's spectrum
    (a symmetric noise estimate: real eigenvalues), within 10 % here, and the sample takes the long step only
    where that top is below long_below; then the heavy ball runs from the point it probed around."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(32, 32))
    S = scale * q @ torch.diag(torch.linspace(0.5, 1.0, 32)) @ q.T  # eps_theta = S x: symmetric, real spectrum

    def denoiser(x, t, cond):
        return (x.flatten(1) @ S).view_as(x)

    x0, target = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    problem = make_subproblem(partial(FixedPoint, damping=1.0, momentum=0.5, long_step=3.0, probes=30), x0,
                              target, torch.zeros_like(x0), denoiser=denoiser)
    truth = _frozen_slope_spectrum_top(problem)
    rule = bind_rule(problem)
    stats = SolverLoop(eta=1e-30, max_iters=40, sync_every=1).run(problem)
    assert (rule.state["k"] == -1).all() and (stats.nfe_backward == 0).all()
    torch.testing.assert_close(rule.state["top"], torch.full((3,), truth), rtol=0.1, atol=0.0)
    assert truth < 0.8 or truth > 1.2  # a clear case either way
    assert (rule.state["damping"] == (3.0 if truth < 0.95 else 1.0)).all()


def test_the_long_step_stays_within_the_heavy_balls_bound(make_subproblem):
    """Without momentum a step of 3 is stable only below 2/3: the gate is the lower of long_below and 0.9 of the
    bound; a step that is not > 0 is one line."""
    from preciseinv.errors import PreciseInvError

    x0 = torch.zeros(1, 2, 4, 4)
    rule = FixedPoint(make_subproblem(None, x0, x0, x0), long_step=3.0, momentum=0.0)
    assert rule.long_below == pytest.approx(0.6)
    assert FixedPoint(make_subproblem(None, x0, x0, x0), long_step=3.0, momentum=0.6).long_below == 0.95
    with pytest.raises(PreciseInvError, match=r"long_step must be > 0"):
        FixedPoint(make_subproblem(None, x0, x0, x0), long_step=-1.0)
