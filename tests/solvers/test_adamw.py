"""The batched AdamW solver: torch's AdamW arithmetic, per-sample freezing, the cap, closed-form recovery."""

import torch

from preciseinv.solvers import AdamWSolver


def quadratic(targets, scale):
    """residual(eps) = mean((scale * eps - target)^2) per sample: minimiser target / scale."""
    return lambda eps, idx: (scale[idx].view(-1, 1, 1, 1) * eps - targets[idx]).pow(2).flatten(1).mean(1)


def test_update_equals_torch_adamw():
    torch.manual_seed(0)
    target, eps0 = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    solver = AdamWSolver(lr=0.05, eta=1e-30, max_iters=7, weight_decay=0.01)
    ours, _ = solver.solve(quadratic(target, torch.ones(1)), eps0)
    p = eps0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p], lr=0.05, betas=(0.9, 0.999), weight_decay=0.01, eps=1e-8)
    for _ in range(7):
        opt.zero_grad()
        (p - target).pow(2).flatten(1).mean(1).sum().backward()
        opt.step()
    torch.testing.assert_close(ours, p.detach(), rtol=1e-5, atol=1e-6)


def test_each_sample_stops_on_its_own_and_stays_frozen():
    torch.manual_seed(0)
    targets = torch.randn(3, 1, 4, 4)
    eps0 = targets.clone()
    eps0[1] += 2.0  # sample 1 starts far away; samples 0 and 2 start at their optimum
    solver = AdamWSolver(lr=0.1, eta=1e-4, max_iters=300, sync_every=4)
    eps, stats = solver.solve(quadratic(targets, torch.ones(3)), eps0)
    assert stats.converged.tolist() == [True, True, True]
    assert stats.iters[0] == 0 and stats.iters[2] == 0 and stats.iters[1] > 0
    torch.testing.assert_close(eps[0], eps0[0])  # frozen at once: not even weight decay touched it
    torch.testing.assert_close(eps[2], eps0[2])
    assert (stats.residual < 1e-4).all()
    # the working set shrank: the converged samples stopped costing forward passes after the first sync
    assert stats.nfe_forward[0] <= 4 < stats.nfe_forward[1]


def test_cap_flags_unconverged_samples():
    targets = torch.randn(2, 1, 4, 4)
    solver = AdamWSolver(lr=1e-4, eta=1e-12, max_iters=5)
    _, stats = solver.solve(quadratic(targets, torch.ones(2)), torch.zeros_like(targets))
    assert stats.converged.tolist() == [False, False]
    assert stats.iters.tolist() == [5, 5]
    assert stats.nfe_forward.tolist() == [6, 6] and stats.nfe_backward.tolist() == [5, 5]
    assert torch.isfinite(stats.residual).all()


def test_recovers_closed_form_minimiser_to_eta():
    torch.manual_seed(1)
    targets, scale = torch.randn(4, 2, 4, 4), torch.tensor([0.5, 1.0, 2.0, 3.0])
    eta = 1e-6
    solver = AdamWSolver(lr=0.05, eta=eta, max_iters=2000, weight_decay=0.0)
    eps, stats = solver.solve(quadratic(targets, scale), torch.zeros_like(targets))
    assert stats.converged.all()
    exact = targets / scale.view(-1, 1, 1, 1)
    err = (eps - exact).pow(2).flatten(1).mean(1)  # residual = scale^2 * err < eta
    assert (err * scale.pow(2) < eta).all()


def test_non_finite_residual_stops_the_sample_unconverged():
    targets = torch.randn(2, 1, 2, 2)
    residual = lambda eps, idx: torch.stack([(eps[i] - targets[j]).pow(2).mean() * (float("nan") if j == 1 else 1)  # noqa: E731
                                             for i, j in enumerate(idx.tolist())])
    _, stats = AdamWSolver(lr=0.1, eta=1e-6, max_iters=20, sync_every=2).solve(residual, torch.zeros_like(targets))
    assert not stats.converged[1] and stats.iters[1] == 0
