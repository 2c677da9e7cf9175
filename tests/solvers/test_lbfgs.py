"""solver=lbfgs: quasi-Newton directions where the Jacobian is far from the frozen slope, Armijo backtracking, and a
fresh start after a non-finite residual."""

from functools import partial

import torch

from preciseinv.solvers import LBFGS, Adam, Hybrid, SolverLoop


def test_lbfgs_learns_a_dense_jacobian_that_adam_only_follows(make_mixing_problem):
    """A noise estimate that mixes every element (the Jacobian a dense random matrix): within 300 iterations the
    quasi-Newton directions reach 1e-8 on every sample, where Adam's are still above 1e-3."""
    runs = {name: SolverLoop(eta=1e-8, max_iters=300).run(make_mixing_problem(rule))
            for name, rule in (("lbfgs", partial(LBFGS)), ("adam", partial(Adam)))}
    assert runs["lbfgs"].converged.all()
    assert (runs["adam"].residual > 1e-3).all()


def test_a_hybrid_ending_in_lbfgs_converges_where_the_fixed_point_diverges(make_mixing_problem):
    """The hybrid with lbfgs as its last phase: Anderson and the fixed point stall or diverge on the dense
    Jacobian, lbfgs finishes every sample."""
    problem = make_mixing_problem(partial(Hybrid, phases=("anderson", "fixed_point", "lbfgs"), slow_window=16))
    stats = SolverLoop(eta=1e-8, max_iters=300).run(problem)
    assert stats.converged.all() and set(stats.phases()) <= {"init", "anderson", "lbfgs"}


def test_a_trial_that_does_not_lower_the_loss_is_halved(make_mixing_problem, bind_rule):
    """The first step is accepted (no point to compare with); a trial whose loss is not below the last accepted
    one by the Armijo condition is rejected: the next trial is halfway back, and the rejection is counted."""
    problem = make_mixing_problem(partial(LBFGS))
    rule = bind_rule(problem)
    p = problem.eps.detach().clone()
    rule.begin(p)
    live = torch.ones(p.shape[0], dtype=torch.bool)
    r = torch.randn_like(p)
    grad, loss = torch.randn_like(p), torch.ones(p.shape[0])
    trial = rule.step(p, r, loss, grad, live, 0)
    assert not torch.equal(trial, p) and rule.rejections().tolist() == [0, 0, 0]
    worse = rule.step(trial, r, loss * 2, grad, live, 1)  # the loss rose: rejected
    torch.testing.assert_close(worse, p + 0.5 * (trial - p))
    assert rule.rejections().tolist() == [1, 1, 1]


def test_a_non_finite_residual_clears_the_memory(make_mixing_problem, bind_rule):
    """After pairs were stored, a non-finite loss on sample 0 (the loop has put it back on its best iterate)
    empties that sample's memory and holds it still; sample 1 keeps its pairs."""
    problem = make_mixing_problem(partial(LBFGS), batch=2)
    rule = bind_rule(problem)
    SolverLoop(eta=1e-30, max_iters=6).run(problem)
    assert (rule.state["rho"] > 0).any(1).all()
    p = problem.eps.detach().clone()
    loss = torch.tensor([float("nan"), 1e-3])
    out = rule.step(p, torch.randn_like(p), loss, torch.randn_like(p), torch.tensor([True, False]), 7)
    assert torch.equal(out, p) and rule.state["rho"][0].eq(0).all() and (rule.state["rho"][1] > 0).any()
    assert rule.state["has_prev"].tolist() == [False, True]
