"""Every update rule reaches eta on the analytic model; Anderson, Newton and the hybrid do what they promise."""

from functools import partial

import pytest
import torch

from preciseinv.solvers import (LBFGS, Adam, AdamW, Anderson, FixedPoint, Hybrid, LoopHooks, Newton, SolverLoop,
                                Spectral)

RULES = {"adamw": partial(AdamW, lr=0.05, weight_decay=0.0), "fixed_point": partial(FixedPoint),
         "momentum": partial(FixedPoint, momentum=0.5), "anderson": partial(Anderson), "spectral": partial(Spectral), "adam": partial(Adam),
         "newton": partial(Newton), "lbfgs": partial(LBFGS), "hybrid": partial(Hybrid), "hybrid-newton": partial(Hybrid, phases=("anderson", "fixed_point", "newton"))}


@pytest.mark.parametrize("name", list(RULES))
def test_every_rule_recovers_the_closed_form_solution(name, linear_problem):
    make, exact = linear_problem
    eta = 1e-8
    problem = make(RULES[name])
    stats = SolverLoop(eta=eta, max_iters=3000).run(problem)
    assert stats.converged.all() and (stats.residual < eta).all()
    assert set(stats.phases()) <= {"init", *problem.configure_optimizers().phase_names()}
    torch.testing.assert_close(problem.eps.detach(), exact, rtol=0, atol=1e-3)


def slope_scaled(sampler, k, m):
    """The coefficient c of eps_theta(x) = c x that makes d mu / d x = m * (the frozen slope)."""
    a, ap = float(sampler.schedule.alphas[k]), float(sampler.schedule.alphas_prev[k])
    lam = (ap / a) ** 0.5
    c2 = (1 - ap) ** 0.5 - lam * (1 - a) ** 0.5  # mu = lam x + c2 eps_theta
    return (m - 1) * lam / c2


@pytest.fixture
def linear_with_slopes(make_subproblem):
    """make(rule, m) -> a subproblem whose sample i has d mu / d x = m[i] x the frozen slope (eps_theta = c_i x)."""

    def make(rule, m):
        torch.manual_seed(0)
        x0, target = torch.randn(len(m), 2, 4, 4), torch.randn(len(m), 2, 4, 4)
        sampler = make_subproblem(None, x0, target, torch.zeros_like(x0)).sampler
        cond = torch.tensor([slope_scaled(sampler, 1, mi) for mi in m])
        return make_subproblem(rule, x0, target, torch.zeros_like(x0), denoiser=lambda x, t, c: c.view(-1, 1, 1, 1) * x,
                               cond=cond)

    return make


def test_anderson_beats_the_plain_iteration_where_the_slope_is_off(linear_with_slopes):
    """d mu / d x = 0.2 x the frozen slope: the plain map contracts by 0.8 per step, Anderson solves it at once."""
    runs = {name: SolverLoop(eta=1e-10, max_iters=500).run(linear_with_slopes(rule, [0.2, 0.2]))
            for name, rule in (("plain", partial(FixedPoint)), ("anderson", partial(Anderson)))}
    assert runs["anderson"].converged.all() and runs["plain"].converged.all()
    assert (runs["anderson"].iters * 5 < runs["plain"].iters).all()


def test_spectral_step_measures_the_slope_the_frozen_one_misses(linear_with_slopes, bind_rule):
    """d mu / d x = 0.2 and 3 x the frozen slope: the plain map contracts by 0.8 per step (sample 0) and diverges
    (sample 1); the secant pair of the first step gives alpha = 1 / m exactly, which lands on the solution."""
    plain = SolverLoop(eta=1e-10, max_iters=500).run(linear_with_slopes(partial(FixedPoint), [0.2]))
    problem = linear_with_slopes(partial(Spectral), [0.2, 3.0])
    rule = bind_rule(problem)
    stats = SolverLoop(eta=1e-10, max_iters=500).run(problem)
    assert stats.converged.all() and (stats.iters <= 4).all() and plain.iters[0] > 50
    torch.testing.assert_close(rule.state["alpha"], torch.tensor([5.0, 1 / 3]), rtol=1e-3, atol=0)


def test_spectral_starts_afresh_after_a_non_finite_residual(linear_with_slopes):
    """A NaN residual on one sample: it comes back where the loop put it (no NaN step), with alpha = 1 again; the
    other sample keeps its secant length."""
    problem = linear_with_slopes(partial(Spectral), [0.2, 0.2])
    rule = problem.configure_optimizers()
    p = problem.eps.detach().clone()
    rule.begin(p)
    live = torch.ones(2, dtype=torch.bool)
    idx = torch.arange(2)
    for it in range(2):
        r = problem.residual(p, idx)
        p = rule.step(p, r, r.pow(2).flatten(1).mean(1), None, live, it)
    assert torch.allclose(rule.state["alpha"], torch.tensor([5.0, 5.0]), rtol=1e-3)
    r = problem.residual(p, idx)
    r[0] = float("nan")
    loss = r.pow(2).flatten(1).mean(1)
    out = rule.step(p, r, loss, None, live, 2)
    assert out[1].isfinite().all() and torch.equal(out[0], p[0])
    assert rule.state["alpha"][0] == 1 and torch.equal(rule.state["prev_p"][0], p[0])  # no secant across the restart
    assert torch.equal(rule.state["prev_p"][1], p[1])


def test_anderson_safeguard_backtracks_where_the_map_diverges(linear_with_slopes, bind_rule):
    """d mu / d x = -3 x the frozen slope: every plain step is 4x worse; the safeguard never accepts one."""
    problem = linear_with_slopes(partial(Anderson), [-3.0])
    start = problem.forward(problem.eps.detach(), torch.arange(1))
    rule = bind_rule(problem)
    stats = SolverLoop(eta=1e-10, max_iters=6).run(problem)
    assert stats.residual[0] <= start[0] and rule.state["rejections"][0] >= 3


def test_newton_takes_the_exact_step_on_a_scaled_identity(linear_with_slopes):
    """J = m I: the Newton-Raphson length lands on the solution in one step (then the check)."""
    stats = SolverLoop(eta=1e-10, max_iters=10).run(linear_with_slopes(partial(Newton), [-3.0, -3.0]))
    assert stats.converged.all() and (stats.iters <= 2).all() and (stats.nfe_backward >= 1).all()


def test_longer_heavy_ball_step_pays_where_the_frozen_slope_overstates(linear_with_slopes):
    """d mu / d x = 0.02 x the frozen slope (a trained network at a high timestep): the fixed point with momentum
    converges, and with the hybrid's step (damping 2, momentum 0.6) in fewer iterations than at damping 1,
    momentum 0.7; the same step stays stable where the slope is 1.3 x the frozen one."""
    iters = {}
    for damping, momentum in ((1.0, 0.7), (2.0, 0.6)):
        stats = SolverLoop(eta=1e-10, max_iters=2000).run(
            linear_with_slopes(partial(FixedPoint, damping=damping, momentum=momentum), [0.02, 1.3]))
        assert stats.converged.all(), (damping, momentum)
        iters[damping] = stats.iters[0].item()
    assert iters[2.0] < 0.8 * iters[1.0], iters


def test_hybrid_gives_its_fixed_point_phase_the_step_and_momentum(linear_with_slopes):
    rule = linear_with_slopes(partial(Hybrid, damping=2.0, momentum=0.6), [1.0]).configure_optimizers()
    fixed_point = rule.rules[rule.phases.index("fixed_point")]
    assert (fixed_point.damping, fixed_point.momentum) == (2.0, 0.6)


def test_hybrid_switches_per_sample(linear_with_slopes):
    """Sample 0: the forward-only iteration converges. Sample 1: it diverges (d mu / d x = -3 x the frozen slope),
    so that sample alone moves on to the momentum phase, then to the gradient phase, which converges."""
    events = []
    problem = linear_with_slopes(partial(Hybrid), [0.9, -3.0])
    stats = SolverLoop(eta=1e-5, max_iters=300, sync_every=4).run(problem, LoopHooks(on_sync=[events.append]))
    assert stats.converged.all()
    assert stats.phases() == ["anderson", "lbfgs"]
    assert stats.nfe_backward[0] == 0 < stats.nfe_backward[1]  # only the diverging sample paid for gradients
    assert sum(e["switched"] for e in events) == 2  # anderson -> fixed_point -> lbfgs, for sample 1


@pytest.mark.parametrize("split, steep_only, flat_to", [(None, ("spectral",), 1), (1.5, ("spectral",), 2),
                                                        (1.5, ("spectral", "fixed_point"), 3)])
def test_hybrid_sends_only_steep_samples_to_a_spectral_phase(linear_with_slopes, split, steep_only, flat_to):
    """Anderson's first step pair measures 1 / m (m: d mu / d x in frozen slopes): 5 on sample 0 (steep), 0.8 on
    sample 1. When both stall after the first window, with ``split`` only the steep one enters the spectral phase
    and the other goes past the steep-only phases (to the fixed point, or to adam); without, both enter it."""
    phases = ("anderson", "spectral", "fixed_point", "adam")
    problem = linear_with_slopes(partial(Hybrid, phases=phases, split=split, steep_only=steep_only), [0.2, 1.25])
    rule = problem.configure_optimizers()
    p, idx, live = problem.eps.detach().clone(), torch.arange(2), torch.ones(2, dtype=torch.bool)
    rule.begin(p)
    for it in range(2):
        r = problem.residual(p, idx)
        p = rule.step(p, r, r.pow(2).flatten(1).mean(1), None, live, it)
    torch.testing.assert_close(rule.rules[0].secant_length(), torch.tensor([5.0, 0.8]), rtol=1e-3, atol=0)
    rule.state["count"][:] = rule.window  # the first window is over and nothing improved: both stall
    rule.state["checkpoint"] = rule.state["best"].clone()
    rule.needs_grad(live)
    assert rule.state["phase"].tolist() == [1, flat_to]
    assert rule.state["steep"].tolist() == ([False, False] if split is None else [True, False])


def test_hybrid_with_split_runs_the_loop_past_a_spectral_phase(linear_with_slopes):
    """Through the loop (syncs, compaction): sample 1 diverges under the fixed-point map and has no positive
    curvature to read, so it is not steep: it goes from Anderson past the spectral phase to the fixed point, then
    to adam, as the default hybrid does, and no sample ever runs in the spectral phase."""
    events = []
    rule = partial(Hybrid, phases=("anderson", "spectral", "fixed_point", "adam"), split=1.5,
                   steep_only=("spectral",))
    problem = linear_with_slopes(rule, [0.9, -3.0])
    stats = SolverLoop(eta=1e-5, max_iters=300, sync_every=4).run(problem, LoopHooks(on_sync=[events.append]))
    assert stats.converged.all() and stats.phases() == ["anderson", "adam"]
    assert all(e["phases"]["spectral"] == 0 for e in events)
    assert any(e["phases"]["fixed_point"] for e in events) and sum(e["switched"] for e in events) == 2


def test_hybrid_split_routes_only_phases_after_anderson(linear_with_slopes):
    """Only Anderson reads the slope along the path: without an Anderson phase before a steep-only one (as in a
    list a user writes without it), nothing is routed and every sample enters each phase."""
    rule = linear_with_slopes(partial(Hybrid, phases=("fixed_point", "spectral", "adam"), split=1.5,
                                      steep_only=("spectral",)), [1.0]).configure_optimizers()
    assert rule.split is None
    for phases in (("newton_krylov", "adam"), ("anderson", "adam")):  # none after Anderson; none at all
        assert linear_with_slopes(partial(Hybrid, phases=phases), [1.0]).configure_optimizers().split is None


def test_the_default_hybrid_sends_only_a_steep_sample_to_newton_krylov(linear_with_slopes):
    """The default's phases (anderson, fixed_point, newton_krylov, lbfgs; split 1.5, steep_only newton_krylov): both
    samples go from Anderson to the fixed point; when that stalls the steep one (secant length 5) enters the
    Newton-Krylov phase, the other (0.8) goes past it to lbfgs."""
    problem = linear_with_slopes(partial(Hybrid), [0.2, 1.25])
    rule = problem.configure_optimizers()
    assert rule.phases == ("anderson", "fixed_point", "newton_krylov", "lbfgs") and rule.split == 1.5
    p, live = problem.eps.detach().clone(), torch.ones(2, dtype=torch.bool)
    rule.begin(p)
    for it in range(2):
        r = problem.residual(p, torch.arange(2))
        p = rule.step(p, r, r.pow(2).flatten(1).mean(1), None, live, it)
    for phases in ([1, 1], [2, 3]):  # Anderson's first window stalls, then the fixed point's
        rule.state["count"][:] = rule.slow_window
        rule.state["checkpoint"] = rule.state["best"].clone()
        rule.needs_grad(live)
        assert rule.state["phase"].tolist() == phases
    assert rule.state["steep"].tolist() == [True, False]


def test_adam_step_follows_the_residual(make_subproblem):
    """Adam's step size is scale x rms(fixed-point correction), so it shrinks with the residual: far below where
    the paper's constant-lr AdamW gets in the same number of steps."""
    torch.manual_seed(0)
    x0, target = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    runs = [SolverLoop(eta=1e-14, max_iters=1000).run(make_subproblem(rule, x0, target, torch.zeros_like(x0)))
            for rule in (partial(Adam), partial(AdamW, lr=0.1))]
    assert (runs[0].residual * 10 < runs[1].residual).all()


def test_adam_decays_its_step_on_a_plateau(make_subproblem, bind_rule):
    """mu = lam * tanh(x) cannot reach a target of 3 lam: the residual plateaus, the scale shrinks per sample,
    and the sample restarts from its best iterate (which is what is returned)."""
    torch.manual_seed(0)
    x0 = torch.randn(2, 1, 4, 4)
    probe = make_subproblem(None, x0, x0, torch.zeros_like(x0))
    s, k = probe.sampler, 1
    lam = s.frozen_slope(k)
    a, ap = float(s.schedule.alphas[k]), float(s.schedule.alphas_prev[k])
    c2 = (1 - ap) ** 0.5 - lam * (1 - a) ** 0.5
    saturating = lambda x, t, c: (lam * torch.tanh(x) - lam * x) / c2  # noqa: E731  (mu = lam tanh x)
    problem = make_subproblem(partial(Adam, patience=5), x0, torch.full_like(x0, 3 * lam), torch.zeros_like(x0),
                              denoiser=saturating)
    rule = bind_rule(problem)
    stats = SolverLoop(eta=1e-6, max_iters=300).run(problem)
    assert not stats.converged.any() and (rule.state["scale"] < 1.0).all()
    returned = problem.forward(problem.eps.detach(), torch.arange(2))
    torch.testing.assert_close(returned, stats.residual)


@pytest.mark.parametrize("krylov_patience", [2, 10**6])
def test_hybrid_moves_a_sample_on_when_its_krylov_solves_fall_short(make_mixing_problem, krylov_patience,
                                                                   bind_rule):
    """A hybrid whose first phase is newton_krylov with two Krylov vectors, on a Jacobian they cannot model: after
    ``krylov_patience`` (2) Newton steps whose solves fell short, each sample moves on to the gradient phase at a
    sync within 40 iterations, although its stall window (a million iterations) never ends; with a patience it
    never reaches (Anderson's ``patience``, 3, does not apply to this phase) both stay."""
    problem = make_mixing_problem(partial(Hybrid, phases=("newton_krylov", "adam"), slow_window=10**6,
                                          krylov_patience=krylov_patience), batch=2)
    rule = bind_rule(problem)
    rule.rules[0].memory = 2  # the phase's own Krylov basis, short on purpose
    events = []
    SolverLoop(eta=1e-10, max_iters=40, sync_every=4).run(problem, LoopHooks(on_sync=[events.append]))
    moved = krylov_patience == 2
    assert sum(e["switched"] for e in events) == 2 * moved and rule.state["phase"].tolist() == [int(moved)] * 2
