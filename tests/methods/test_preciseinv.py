"""PreciseInv and DDIM inversion on an analytic model whose exact inverse is known in closed form."""

from functools import partial

import torch
from diffusers import DDIMScheduler

from preciseinv.methods import DDIMInversion, NoiseSubproblem, PreciseInv
from preciseinv.samplers import DDIMSampler, build_schedule
from preciseinv.solvers import AdamW

C = 0.7  # eps_theta(x, t) = C * x  makes every DDIM step linear: mu_k(x) = lam_k * x


def linear_denoiser(x, t, cond):
    return C * x


def sampler(num_steps=2):
    config = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                           set_alpha_to_one=False, steps_offset=1).config
    return DDIMSampler(build_schedule(config, num_steps))


def lam(s, k):
    a, ap = s.schedule.alphas[k].float(), s.schedule.alphas_prev[k].float()
    return ap.sqrt() * (1 - (1 - a).sqrt() * C) / a.sqrt() + (1 - ap).sqrt() * C


def test_recovers_the_closed_form_inverse_to_eta():
    s, eta = sampler(2), 1e-6
    x0 = torch.randn(3, 4, 8, 8)
    result = PreciseInv(eta=eta, max_iters=2000).invert(linear_denoiser, s, x0)
    exact = x0 / (lam(s, 0) * lam(s, 1))  # x*_T with mu_1(mu_2(x*_T)) = x0
    assert all(c.all() for c in result.converged)
    assert all((r < eta).all() for r in result.residual)
    # each step's residual bound carries through the linear sampler: ||x_T - exact||^2 <= eta / lam^2 terms
    bound = eta / lam(s, 1) ** 2 + eta / (lam(s, 0) * lam(s, 1)) ** 2
    err = (result.latent - exact).pow(2).flatten(1).mean(1)
    assert (err.sqrt() <= bound.sqrt() * 2).all()
    recon = s.sample(linear_denoiser, result.latent)
    assert ((recon - x0).pow(2).flatten(1).mean(1) < 4 * eta).all()


def test_counts_network_calls_and_steps():
    s = sampler(2)
    x0 = torch.randn(2, 1, 4, 4)
    result = PreciseInv(eta=1e-5, max_iters=50, solver=partial(AdamW, lr=0.05)).invert(linear_denoiser, s, x0)
    iters = torch.stack(result.iters, 1).sum(1)
    assert (result.nfe_backward >= iters).all()  # frozen samples ride along until the next host sync
    assert (result.nfe_forward >= result.nfe_backward + 2).all()  # + one init and one final check per step
    rows = result.per_sample()
    assert len(rows) == 2 and len(rows[0]["residual"]) == 2 and isinstance(rows[0]["converged"][0], bool)
    assert all(r["cost"] == r["nfe_forward"] + 2 * r["nfe_backward"] for r in rows)
    assert all(p in ("init", "adamw", None) for r in rows for p in r["phase"])


def test_ddim_inversion_is_one_call_per_step_and_reports_its_residual():
    s = sampler(3)
    x0 = torch.randn(2, 1, 4, 4)
    result = DDIMInversion(eta=1e-3).invert(linear_denoiser, s, x0)
    assert result.nfe_forward.tolist() == [3, 3] and result.nfe_backward.tolist() == [0, 0]
    assert all(r.shape == (2,) and (r >= 0).all() for r in result.residual)


def test_preciseinv_beats_ddim_inversion_on_a_nonlinear_model():
    torch.manual_seed(0)
    w = torch.randn(4, 4) * 0.5
    denoiser = lambda x, t, c: torch.tanh(torch.einsum("ij,bjhw->bihw", w, x)) * (1 + t / 1000)  # noqa: E731
    s, x0 = sampler(2), torch.randn(2, 4, 8, 8)
    precise = PreciseInv(eta=1e-5, max_iters=500).invert(denoiser, s, x0)
    ddim = DDIMInversion().invert(denoiser, s, x0)
    err = lambda latent: (s.sample(denoiser, latent) - x0).pow(2).mean()  # noqa: E731
    assert err(precise.latent) < 1e-4 < err(ddim.latent)


def test_subproblem_is_a_lightning_module_that_holds_eps_only():
    s = sampler(1)
    x0 = torch.randn(2, 1, 4, 4)
    problem = NoiseSubproblem(s, linear_denoiser, 0, x0, x0, torch.randn_like(x0), solver=partial(AdamW, lr=0.1))
    from lightning.pytorch import LightningModule

    assert isinstance(problem, LightningModule) and isinstance(problem.configure_optimizers(), AdamW)
    assert [name for name, _ in problem.named_parameters()] == ["eps"]
    assert list(problem.state_dict()) == ["eps"]
    loss = problem(problem.eps, torch.arange(2))
    assert loss.shape == (2,) and loss.requires_grad
    out = problem.training_step(torch.tensor([1]))  # Lightning's hook: the residual of the rows it is given
    assert out["loss"].shape == (1,) and out["r"].shape == (1, 1, 4, 4)
    (grad,) = torch.autograd.grad(out["loss"].sum(), problem.eps)
    assert grad[0].abs().sum() == 0 and grad[1].abs().sum() > 0  # only row 1 was evaluated


def test_noise_injecting_samplers_store_the_noise_that_makes_sampling_exact():
    from diffusers import DDPMScheduler, LCMScheduler

    from preciseinv.samplers import DDPMSampler, LCMSampler, build_noise_schedule

    cfg = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    x0 = torch.randn(2, 2, 4, 4)
    for sampler in (DDPMSampler(build_noise_schedule("ddpm", DDPMScheduler(**cfg).config, 2)),
                    LCMSampler(build_noise_schedule("lcm", LCMScheduler(**cfg).config, 2))):
        eta = 1e-6
        result = PreciseInv(eta=eta, max_iters=3000).invert(linear_denoiser, sampler, x0)
        assert result.noises[0] is None and result.noises[1].shape == x0.shape
        assert all(c.all() for c in result.converged), sampler.name
        recon = sampler.sample(linear_denoiser, result.latent, None, result.noises)
        assert ((recon - x0).pow(2).flatten(1).mean(1) < 100 * eta).all(), sampler.name
        problem = NoiseSubproblem(sampler, linear_denoiser, 1, x0, x0, torch.zeros_like(x0), noise=torch.ones_like(x0),
                                  learn_noise=sampler.learn_noise)
        assert problem.eps.shape[1] == (4 if sampler.name == "ddpm" else 2)  # DDPM learns [eps | z] jointly


def test_retry_solves_again_only_what_the_first_solver_left_above_eta():
    from preciseinv.solvers import FixedPoint

    s, eta = sampler(2), 1e-6
    x0 = torch.randn(3, 1, 4, 4)
    x0[0] = 0  # its DDIM start is exact: the first solver finishes it at once
    weak = partial(AdamW, lr=1e-4)  # three iterations of it leave the others far above eta
    alone = PreciseInv(eta=eta, max_iters=3, solver=weak).invert(linear_denoiser, s, x0)
    result = PreciseInv(eta=eta, max_iters=3, solver=weak, retry=partial(FixedPoint), retry_iters=500).invert(
        linear_denoiser, s, x0)
    assert alone.converged[1].tolist() == [True, False, False]  # the second step: only the exact start finishes
    assert all(c.all() for c in result.converged)
    rows, first = result.per_sample(), alone.per_sample()
    assert rows[0]["phase"] == ["init", "init"] and rows[0]["nfe_forward"] == first[0]["nfe_forward"]
    assert [r["phase"][1] for r in rows[1:]] == ["retry:fixed_point"] * 2
    # both solves' network calls count: the first's, then the retry's (at least one forward per iteration)
    assert all(r["nfe_forward"] > f["nfe_forward"] + sum(r["iters"]) - sum(f["iters"]) - 1
               for r, f in zip(rows[1:], first[1:]))
    recon = s.sample(linear_denoiser, result.latent)
    assert ((recon - x0).pow(2).flatten(1).mean(1) < 100 * eta).all()


def test_retry_keeps_the_first_solution_where_the_retry_ends_worse():
    from preciseinv.solvers import FixedPoint

    s = sampler(2)
    x0 = torch.randn(2, 1, 4, 4)
    first = partial(FixedPoint, momentum=0.0)  # each of its steps lowers the residual of this linear model
    alone = PreciseInv(eta=1e-30, max_iters=3, solver=first).invert(linear_denoiser, s, x0)
    result = PreciseInv(eta=1e-30, max_iters=3, solver=first, retry=partial(AdamW, lr=1e-6), retry_iters=2).invert(
        linear_denoiser, s, x0)
    assert torch.equal(result.latent, alone.latent)
    assert all(torch.equal(a, b) for a, b in zip(result.residual, alone.residual))
    assert not any(str(p).startswith("retry") for r in result.per_sample() for p in r["phase"])
    assert (result.nfe_backward > alone.nfe_backward).all()  # the retry's work is counted though it is discarded


def test_retry_with_a_learned_step_noise_starts_from_the_same_noise():
    from diffusers import DDPMScheduler

    from preciseinv.samplers import DDPMSampler, build_noise_schedule

    ddpm = DDPMSampler(build_noise_schedule("ddpm", DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                                  beta_end=0.012, steps_offset=1).config, 2))
    x0, eta = torch.randn(2, 2, 4, 4), 1e-6
    result = PreciseInv(eta=eta, max_iters=2, solver=partial(AdamW, lr=1e-4), retry_iters=3000,
                        retry=partial(AdamW, lr=0.05)).invert(linear_denoiser, ddpm, x0)
    assert all(c.all() for c in result.converged)
    assert result.per_sample()[0]["phase"][1] == "retry:adamw"
    recon = ddpm.sample(linear_denoiser, result.latent, None, result.noises)
    assert ((recon - x0).pow(2).flatten(1).mean(1) < 100 * eta).all()


def test_retry_replaces_a_first_solve_that_ended_on_a_non_finite_residual():
    """The paper's AdamW returns its last iterate: a step that blows up ends it on NaN, which any finite retry beats."""
    from preciseinv.solvers import FixedPoint

    def fragile(x, t, cond):  # the linear model, undefined far from its solution
        return torch.where(x.abs().amax((1, 2, 3), keepdim=True) > 50, float("nan"), C * x)

    s, eta = sampler(2), 1e-6
    x0 = torch.randn(2, 1, 4, 4)
    wild = partial(AdamW, lr=1000.0)
    alone = PreciseInv(eta=eta, max_iters=20, solver=wild).invert(fragile, s, x0)
    assert not torch.isfinite(alone.residual[1]).any()
    result = PreciseInv(eta=eta, max_iters=20, solver=wild, retry=partial(FixedPoint), retry_iters=500).invert(
        fragile, s, x0)
    assert all(c.all() for c in result.converged) and torch.isfinite(result.latent).all()


def test_retry_keeps_the_solution_that_lands_nearer_x0_through_the_steps_below():
    """Above the first step a residual below eta can still land far from x0 (the steps under it amplify its
    direction): the solution kept is the one whose output, carried down by ``below``, lands nearer x0."""
    from preciseinv.solvers import FixedPoint

    s, eta = sampler(2), 1e-6
    x0 = torch.randn(2, 1, 4, 4)
    method = PreciseInv(eta=eta, max_iters=3, solver=partial(AdamW, lr=1e-4), retry=partial(FixedPoint),
                        retry_iters=500)
    x1 = method.invert(linear_denoiser, s, x0).states[0]  # x*_1, the target of the second step
    start = s.invert_step(linear_denoiser, x1, 1)
    honest = lambda x, idx: x0[idx] + (x - x1[idx])  # noqa: E731  (lands as near x0 as x is to x*_1)
    perverse = lambda x, idx: x0[idx] + 1e-3 / ((x - x1[idx]).abs() + 1e-6)  # noqa: E731  (the nearer, the farther)
    _, kept = method.solve(linear_denoiser, s, x0, x1, 1, start, below=honest)
    assert kept.converged.all() and kept.phases() == ["retry:fixed_point"] * 2
    _, first = method.solve(linear_denoiser, s, x0, x1, 1, start, below=perverse)
    assert not first.converged.any() and (first.residual > eta).all()
    assert (first.nfe_forward == kept.nfe_forward).all()  # both compared their landings: 2 x (mu_1 + the step under)
