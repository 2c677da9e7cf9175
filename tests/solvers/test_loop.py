"""The batched loop: per-sample stop at eta, freezing, the cap, best iterates, non-finite samples, telemetry."""

from functools import partial

import torch

from preciseinv.solvers import AdamW, Anderson, FixedPoint, Hybrid, LoopHooks, SolverLoop


def test_each_sample_stops_on_its_own_and_stays_frozen(linear_problem):
    make, exact = linear_problem
    eps0 = exact.clone()
    eps0[1] += 2.0  # sample 1 starts far away; samples 0 and 2 start at their solution
    problem = make(partial(AdamW, lr=0.1), eps0)
    stats = SolverLoop(eta=1e-4, max_iters=300, sync_every=4).run(problem)
    assert stats.converged.tolist() == [True, True, True]
    assert stats.iters[0] == 0 and stats.iters[2] == 0 and stats.iters[1] > 0
    torch.testing.assert_close(problem.eps[0], eps0[0])  # frozen at once: not even weight decay touched it
    torch.testing.assert_close(problem.eps[2], eps0[2])
    assert (stats.residual < 1e-4).all()
    assert stats.phases() == ["init", "adamw", "init"]
    # the working set shrank: the converged samples stopped costing network calls after the first sync
    assert stats.nfe_forward[0] == 1 and stats.nfe_backward[0] <= 1 < stats.nfe_backward[1]


def test_cap_flags_unconverged_samples(linear_problem):
    make, _ = linear_problem
    stats = SolverLoop(eta=1e-12, max_iters=5).run(make(partial(AdamW, lr=1e-4)))
    assert stats.converged.tolist() == [False] * 3 and stats.phases() == [None] * 3
    assert stats.iters.tolist() == [5] * 3
    assert stats.nfe_forward.tolist() == [6] * 3 and stats.nfe_backward.tolist() == [5] * 3  # last check: forward only
    assert torch.isfinite(stats.residual).all()


def test_forward_only_rules_never_call_backward(linear_problem):
    make, _ = linear_problem
    for rule in (FixedPoint, Anderson):
        stats = SolverLoop(eta=1e-10, max_iters=50).run(make(partial(rule)))
        assert stats.converged.all() and (stats.nfe_backward == 0).all()


def test_the_best_iterate_is_returned_even_when_the_iteration_diverges(make_subproblem):
    """Damping -1 steps the wrong way: the residual grows every step; the loop keeps the start."""
    torch.manual_seed(0)
    x0, target = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    problem = make_subproblem(partial(FixedPoint, damping=-1.0), x0, target, torch.zeros_like(x0))
    start = problem.forward(problem.eps.detach(), torch.arange(2))
    stats = SolverLoop(eta=1e-12, max_iters=20).run(problem)
    torch.testing.assert_close(stats.residual, start)
    torch.testing.assert_close(problem.eps.detach(), torch.zeros_like(x0))


def test_non_finite_residual_stops_adamw_and_restarts_the_hybrid(make_subproblem):
    torch.manual_seed(0)
    x0, target = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)

    # sample 1's network output is NaN everywhere
    bad = lambda x, t, cond: 0.7 * x + torch.where(cond.view(-1, 1, 1, 1) > 0, float("nan"), 0.0)  # noqa: E731
    cond = torch.tensor([0.0, 1.0])
    stats = SolverLoop(eta=1e-6, max_iters=20, sync_every=2).run(
        make_subproblem(partial(AdamW, lr=0.1), x0, target, torch.zeros_like(x0), denoiser=bad, cond=cond))
    assert not stats.converged[1] and stats.iters.tolist() == [20, 0]  # sample 0 runs on unharmed
    hybrid = make_subproblem(partial(Hybrid), x0, target, torch.zeros_like(x0), denoiser=bad, cond=cond)
    stats = SolverLoop(eta=1e-6, max_iters=20, sync_every=2).run(hybrid)
    assert stats.converged.tolist() == [True, False]
    assert torch.isfinite(hybrid.eps).all()  # the NaN sample is back on its (finite) starting point


def test_telemetry_callback_reports_every_sync(linear_problem):
    make, _ = linear_problem
    events = []
    SolverLoop(eta=1e-10, max_iters=30, sync_every=4).run(make(partial(Hybrid)), LoopHooks(on_sync=[events.append]))
    assert [e["iteration"] for e in events] == list(range(0, 4 * len(events), 4))
    first = events[0]
    assert first["k"] == 1 and first["batch"] == 3 and first["live"] == 3 and first["converged_fraction"] == 0.0
    assert first["residual_median"] <= first["residual_max"]
    assert set(first["phases"]) == {"anderson", "fixed_point", "newton_krylov", "lbfgs"} and first["switched"] == 0
    assert all(e["residual_max"] is None or e["residual_max"] >= 0 for e in events)
