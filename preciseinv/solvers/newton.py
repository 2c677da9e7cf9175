"""``solver=newton``: gradient steps of Newton-Raphson length with per-sample backtracking.

GNRI (Samuel et al., ICLR 2025) inverts each step with Newton-Raphson on the scalar residual norm: the root of
its linearisation along the gradient,  p <- p - ||r||^2 J^T r / ||J^T r||^2,  which in terms of the mean squared
residual L and its gradient g is  p <- p - 2 L g / ||g||^2 (exact in one step when J is a multiple of the
identity). Where the linearisation lies, that length overshoots; so each sample keeps its best iterate and a
step-length factor alpha: a trial that lowers L is accepted and alpha grows (x ``grow``, at most 1), a trial that
does not is rejected and alpha shrinks (x ``shrink``), and the next trial starts again from the best iterate.
One forward and one backward per iteration.
"""

from __future__ import annotations

import torch

from preciseinv.solvers.base import UpdateRule, rows, sq_norm


class Newton(UpdateRule):
    name = "newton"
    uses_gradient = True
    restarts = True  # a non-finite trial is a rejected one

    def __init__(self, problem, grow: float = 2.0, shrink: float = 0.25, alpha: float = 1.0):
        super().__init__(problem)
        self.grow, self.shrink, self.alpha0 = grow, shrink, alpha

    def initial_state(self, p):
        return {**self.best_state(p, g=torch.zeros_like(p)),
                "alpha": torch.full((p.shape[0],), self.alpha0, device=p.device)}

    def step(self, p, r, loss, grad, live, it):
        s = self.state
        if grad is None:
            return p
        has_grad = sq_norm(grad) != 0  # a sample whose gradient was not computed this iteration holds still
        better = self.track_best(p, loss, live & has_grad, g=grad)
        worse = live & has_grad & ~better
        s["alpha"] = torch.where(better, (s["alpha"] * self.grow).clamp(max=1.0),
                                 torch.where(worse, s["alpha"] * self.shrink, s["alpha"]))
        length = 2 * s["best"] / sq_norm(s["best_g"]).clamp_min(1e-30)  # (b,) the Newton-Raphson step length
        trial = s["best_p"] - rows(s["alpha"] * length, p) * s["best_g"]
        return torch.where(rows(better | worse, p), trial, p)
