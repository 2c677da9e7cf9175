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


def test_a_non_finite_trial_shortens_the_restart_step(make_mixing_problem, bind_rule):
    """A trial whose residual is non-finite: the sample restarts from its best iterate down the gradient by a
    quarter of the fixed-point correction's size, not the whole (which would land on the same trial again)."""
    problem = make_mixing_problem(partial(LBFGS), batch=1)
    rule = bind_rule(problem)
    p = problem.eps.detach().clone()
    rule.begin(p)
    live, r, grad = torch.ones(1, dtype=torch.bool), torch.randn_like(p), torch.randn_like(p)
    first = rule.step(p, r, torch.ones(1), grad, live, 0) - p
    rule.step(p, r, torch.tensor([float("nan")]), grad, live, 1)  # the loop put it back on p
    second = rule.step(p, r, torch.ones(1), grad, live, 2) - p
    torch.testing.assert_close(second, first / 4)


def test_a_line_search_that_keeps_failing_gives_the_memory_up(make_mixing_problem, bind_rule):
    """max_halvings rejected trials in a row (a direction the memory got wrong, or the loss's rounding floor):
    the pairs are dropped and the next trial is a shorter step down the last accepted gradient."""
    problem = make_mixing_problem(partial(LBFGS, max_halvings=3), batch=1)
    rule = bind_rule(problem)
    SolverLoop(eta=1e-30, max_iters=6).run(problem)
    assert (rule.state["rho"] > 0).any()
    prev_p, prev_g = rule.state["prev_p"].clone(), rule.state["prev_g"].clone()
    live, r = torch.ones(1, dtype=torch.bool), torch.randn_like(prev_p)
    trial = prev_p + torch.randn_like(prev_p)
    for it in range(3):  # each trial's loss is far above the last accepted one: rejected
        trial = rule.step(trial, r, torch.tensor([1e9]), torch.randn_like(prev_p), live, 10 + it)
    assert rule.state["rho"].eq(0).all() and rule.rejections().tolist() == [0]
    step = trial - prev_p
    assert torch.allclose(step / step.norm(), -prev_g / prev_g.norm(), atol=1e-5)  # down the gradient


def test_more_secant_pairs_finish_a_dense_problem_sooner(make_mixing_problem):
    """With as many pairs as the problem has directions (32) the quasi-Newton model of the dense Jacobian is
    complete and every sample reaches 1e-8 in fewer iterations than with 4 pairs; the hybrid hands its setting to
    its lbfgs phase."""
    iters = {m: SolverLoop(eta=1e-8, max_iters=400).run(make_mixing_problem(partial(LBFGS, memory=m))).iters
             for m in (4, 32)}
    assert (iters[32] < iters[4]).all()
    hybrid = Hybrid(make_mixing_problem(partial(LBFGS)), phases=("anderson", "lbfgs"), lbfgs_memory=32)
    assert hybrid.rules[-1].memory == 32
