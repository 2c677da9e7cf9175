"""Bucket sizes for compiled networks: the sizes, the padding, and a padded solve that equals the unpadded one."""

from functools import partial

import pytest
import torch

from preciseinv.solvers import AdamW, Hybrid, SolverLoop
from preciseinv.solvers.buckets import bucket, is_bucket, pad_to_buckets, plan


def test_bucket_sizes_are_powers_of_two_and_their_three_quarters():
    assert [bucket(n) for n in range(1, 18)] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 24]
    assert [n for n in range(1, 129) if is_bucket(n)] == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]
    assert all(bucket(n) >= n and 3 * (bucket(n) - n) < bucket(n) for n in range(1, 1000))  # under a third padding


def test_padding_places_every_running_row_once_at_bucket_sizes_or_keeps_the_exact_split():
    gen = torch.Generator().manual_seed(0)
    padded = 0
    for _ in range(500):
        n = int(torch.randint(1, 70, (), generator=gen))
        role = torch.randint(0, 3, (n,), generator=gen)  # 0 forward-only, 1 gradient, 2 finished
        fwd, grad, spare = [(role == k).nonzero().squeeze(1) for k in range(3)]
        pf, pg = pad_to_buckets(fwd, grad, spare)
        rows = torch.cat([pf, pg])
        assert rows.unique().numel() == rows.numel()  # no row twice
        assert set(rows.tolist()) >= set(fwd.tolist()) | set(grad.tolist())  # every running row
        assert pg[: grad.numel()].equal(grad)  # the gradient rows lead the gradient part, in order
        assert set(pf.tolist()) <= set(fwd.tolist()) | set(spare.tolist())  # never a gradient row without one
        sizes = plan(fwd.numel(), grad.numel(), spare.numel())
        if sizes is None:
            assert pf.equal(fwd) and pg.equal(grad)  # the exact split
            continue
        padded += 1
        assert (pf.numel(), pg.numel()) == sizes and all(m == 0 or is_bucket(m) for m in sizes)
        cost, exact = pf.numel() + 3 * pg.numel(), fwd.numel() + 3 * grad.numel()
        assert cost <= 1.5 * exact  # a backward counts two forwards: at most what padding one part costs
        if grad.numel() == 0 and spare.numel() >= bucket(fwd.numel()) - fwd.numel():
            assert pf.numel() == bucket(fwd.numel())  # forward-only: padded whenever finished rows suffice
    assert padded > 250


def test_a_bucket_sized_working_set_that_only_runs_forwards_is_always_padded():
    for total in (8, 12, 16, 24, 32, 48, 64):
        for live in range(1, total + 1):
            assert plan(live, 0, total - live) == (bucket(live), 0)


def _recording_denoiser(sizes: list):
    """A nonlinear, per-sample independent denoiser that records the batch size of every call."""

    def denoiser(x, t, cond):
        sizes.append(x.shape[0])
        return 0.7 * x + 0.3 * torch.sin(cond.view(-1, 1, 1, 1) * x)

    return denoiser


@pytest.mark.parametrize("solver", [partial(Hybrid), partial(AdamW, lr=0.1)], ids=["hybrid", "adamw"])
def test_padded_solve_meets_few_sizes_and_equals_the_unpadded_solve(make_subproblem, solver):
    torch.manual_seed(0)
    B = 13
    x0, eps_true = torch.randn(B, 2, 4, 4), torch.randn(B, 2, 4, 4)
    cond = torch.linspace(0.0, 2.0, B)  # samples of graded difficulty: they finish at different iterations
    exact = make_subproblem(solver, x0, torch.zeros_like(x0), eps_true, denoiser=_recording_denoiser([]), cond=cond)
    target = exact.residual(eps_true, torch.arange(B)).detach()  # mu(x_t(eps_true)): a solution exists
    start = eps_true + torch.linspace(0.0, 1.0, B).view(-1, 1, 1, 1) * torch.randn_like(eps_true)
    runs = {}
    for pad in (False, True):
        sizes = []
        problem = make_subproblem(solver, x0, target, start, denoiser=_recording_denoiser(sizes), cond=cond)
        stats = SolverLoop(eta=1e-4, max_iters=80, sync_every=4, buckets=pad).run(problem)
        runs[pad] = stats, problem.eps.detach().clone(), sizes
    (s0, eps0, sizes0), (s1, eps1, sizes1) = runs[False], runs[True]
    assert 0 < int(s0.converged.sum()) and len(set(sizes0)) > 3  # the unpadded working set took many sizes
    assert s1.converged.equal(s0.converged) and s1.iters.equal(s0.iters) and s1.phase.equal(s0.phase)
    torch.testing.assert_close(eps1, eps0)
    torch.testing.assert_close(s1.residual, s0.residual)
    # padding rows' network calls are nobody's: every sample's count is what the unpadded loop counted
    assert s1.nfe_forward.equal(s0.nfe_forward) and s1.nfe_backward.equal(s0.nfe_backward)
    assert any(not is_bucket(n) for n in set(sizes0) - {B})  # unpadded, the working set took odd sizes
    assert {n for n in sizes1 if not is_bucket(n)} <= {B}  # padded: only the whole batch (nothing to pad with yet)


def test_buckets_default_to_the_models_compiled_flag(make_subproblem):
    class Model:
        static_shapes = False

        def predict(self, x, t, cond):
            return 0.7 * x

    model = Model()
    x0 = torch.randn(5, 1, 2, 2)
    problem = make_subproblem(partial(AdamW, lr=0.1), x0, x0, torch.zeros_like(x0), denoiser=model.predict)
    assert not problem.static_shapes
    model.static_shapes = True  # what preciseinv.accel.accelerate sets with model.compile
    assert problem.static_shapes
