"""solver=newton_krylov: GMRES on finite-difference Jacobian-vector products, forward-only."""

from functools import partial

import pytest
import torch

from preciseinv.solvers import FixedPoint, NewtonKrylov, SolverLoop


def test_solves_a_linear_problem_the_fixed_point_cannot(make_mixing_problem):
    """A noise estimate mixing every element (far from the frozen-slope model): the plain fixed point diverges,
    GMRES with a basis as large as the problem solves it to eta, with forward calls only."""
    plain = SolverLoop(eta=1e-10, max_iters=300).run(make_mixing_problem(partial(FixedPoint)))
    assert not plain.converged.any()
    problem = make_mixing_problem(partial(NewtonKrylov, memory=32))
    stats = SolverLoop(eta=1e-10, max_iters=300).run(problem)
    assert stats.converged.all() and (stats.nfe_backward == 0).all()
    r = problem.residual(problem.eps.detach(), torch.arange(3))
    assert r.pow(2).flatten(1).mean(1).max() < 1e-10


def test_first_newton_step_is_the_fixed_point_step_on_a_linear_model(linear_problem):
    """Where the frozen-slope model is exact up to a scale (eps_theta = C x), one Krylov vector spans the
    solution: a probe, then the step, lands on it up to the finite difference's rounding (fp32: eta = 1e-6 is met
    at the third evaluation)."""
    make, exact = linear_problem
    problem = make(partial(NewtonKrylov))
    stats = SolverLoop(eta=1e-6, max_iters=10, sync_every=1).run(problem)
    assert stats.converged.all() and stats.iters.max() <= 2
    torch.testing.assert_close(problem.eps.detach(), exact, rtol=1e-3, atol=1e-3)


def test_a_krylov_solve_short_of_its_forcing_counts_as_a_rejection(make_mixing_problem, linear_problem,
                                                                  bind_rule):
    """Two Krylov vectors cannot model the mixing Jacobian: every Newton step's solve runs out of vectors short of
    its forcing term, and rejections() counts them in a row (what moves a sample out of a hybrid's newton_krylov
    phase), with no line search given up. Where one vector spans the solution (eps_theta = C x) every solve meets
    its forcing term and none is ever counted."""
    short = make_mixing_problem(partial(NewtonKrylov, memory=2))
    rule = bind_rule(short)
    SolverLoop(eta=1e-10, max_iters=12).run(short)
    assert (rule.state["unsolved"] >= 3).all() and (rule.state["failures"] == 0).all(), rule.state["unsolved"]
    make, _ = linear_problem
    problem = make(partial(NewtonKrylov))
    rule = bind_rule(problem)
    seen, step = [], rule.step

    def counted(*args):
        out = step(*args)
        seen.append(int(rule.rejections().max()))
        return out

    rule.step = counted
    stats = SolverLoop(eta=1e-6, max_iters=10, sync_every=1).run(problem)
    assert stats.converged.all() and seen and max(seen) == 0


def test_levenberg_marquardt_damping_solves_the_mixing_problem(make_mixing_problem):
    """With lm_damping the Newton step is damped in the Krylov space instead of line-searched: on the linear
    mixing problem (where the linear model is exact, every trial is taken and mu shrinks) it still solves to eta,
    forward calls only."""
    problem = make_mixing_problem(partial(NewtonKrylov, memory=32, lm_damping=1e-3))
    stats = SolverLoop(eta=1e-10, max_iters=300).run(problem)
    assert stats.converged.all() and (stats.nfe_backward == 0).all()


def test_a_rejected_damped_trial_is_retried_in_the_same_krylov_space(make_subproblem, bind_rule):
    """On a non-linear problem (a saturating, mixing noise estimate) some damped trials fail: each failure raises
    mu by nu >= 2 and the next point is another trial from the same Krylov space (no new probe, the basis
    unchanged), which the line search would have found by halving along the old direction instead."""
    torch.manual_seed(0)
    x0, target = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    A = torch.randn(32, 32) * 0.5

    def rough(x, t, cond):
        return 3 * torch.tanh(x.flatten(1) @ A.T).view_as(x)

    problem = make_subproblem(partial(NewtonKrylov, memory=32, lm_damping=1e-6), x0, target, torch.zeros_like(x0),
                              denoiser=rough)
    rule = bind_rule(problem)
    keys = ("mu", "j", "probing", "halvings")
    seen, step = [], rule.step

    def recorded(*args):
        before = {k: rule.state[k].clone() for k in keys}
        out = step(*args)
        seen.append((before, {k: rule.state[k].clone() for k in keys}))
        return out

    rule.step = recorded
    start = problem.residual(problem.eps.detach(), torch.arange(3)).pow(2).flatten(1).mean(1)
    stats = SolverLoop(eta=1e-8, max_iters=200, sync_every=1).run(problem)
    retried = 0
    for before, after in seen:
        again = (after["halvings"] > before["halvings"])  # (b,) a trial rejected, the direction not given up
        retried += int(again.sum())
        assert (after["mu"][again] >= 2 * before["mu"][again]).all()
        assert (~after["probing"][again]).all() and (after["j"][again] == before["j"][again]).all()
    assert retried > 0
    assert (stats.residual < start / 2).all(), (start, stats.residual)  # only taken trials move the iterate


def test_lm_damping_must_be_positive(make_mixing_problem):
    """mu = 0 would stay 0 however often a trial is rejected (each retry the same step): one line instead."""
    from preciseinv.errors import PreciseInvError

    with pytest.raises(PreciseInvError, match=r"lm_damping must be > 0 \(null: the line search\), got 0"):
        SolverLoop(eta=1e-10, max_iters=3).run(make_mixing_problem(partial(NewtonKrylov, lm_damping=0)))
