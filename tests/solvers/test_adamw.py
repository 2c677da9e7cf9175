"""solver=adamw is the paper's recipe: torch.optim.AdamW's arithmetic, through the loop and the subproblem."""

from functools import partial

import torch

from preciseinv.solvers import AdamW, SolverLoop


def test_update_equals_torch_adamw(linear_problem):
    make, _ = linear_problem
    eps0 = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    problem = make(partial(AdamW, lr=0.05, weight_decay=0.01), eps0)
    SolverLoop(eta=1e-30, max_iters=7).run(problem)
    reference = make(None, eps0)
    opt = torch.optim.AdamW(reference.parameters(), lr=0.05, betas=(0.9, 0.999), weight_decay=0.01, eps=1e-8)
    for _ in range(7):
        opt.zero_grad()
        reference.training_step(torch.arange(3))["loss"].sum().backward()
        opt.step()
    torch.testing.assert_close(problem.eps, reference.eps, rtol=1e-5, atol=1e-6)


def test_returns_the_last_iterate_as_the_paper(linear_problem):
    """A learning rate far too large makes AdamW oscillate; the paper's loop returns where it stopped."""
    make, _ = linear_problem
    problem = make(partial(AdamW, lr=5.0))
    stats = SolverLoop(eta=1e-30, max_iters=6).run(problem)
    last = problem.forward(problem.eps.detach(), torch.arange(3))
    torch.testing.assert_close(stats.residual, last)
