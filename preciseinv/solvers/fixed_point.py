"""``solver=fixed_point``: the forward-only iteration  eps <- eps + damping * newton_step(r(eps)), with optional
heavy-ball momentum.

With the network's estimate held fixed, each sampler's step is affine in eps*, so cancelling the residual under
that model is one division (``NoiseSubproblem.newton_step``); for DDIM with epsilon prediction it is the classic
fixed-point inversion  x <- x - (mu(x) - x*_{t-1}) / sqrt(a_{t-1} / a_t). One network forward per iteration and no
backward. It converges where the network's own dependence on x_t is mild (trained models) and may diverge where it
is not (random weights); the loop keeps each sample's best iterate.

``momentum`` > 0 adds Polyak's heavy ball, + momentum * (eps_k - eps_{k-1}). On a trained model the Jacobian of
mu near the solution has most of its spectrum far below the frozen slope (the network removes what it takes for
noise), so the plain iteration contracts slowly there, which the momentum speeds up
(the hybrid's phase: damping 2, momentum 0.6).
"""

from __future__ import annotations

import torch

from preciseinv.solvers.base import UpdateRule, rows


class FixedPoint(UpdateRule):
    name = "fixed_point"

    def __init__(self, problem, damping: float = 1.0, momentum: float = 0.0):
        super().__init__(problem)
        self.damping, self.momentum = damping, momentum

    def initial_state(self, p):
        return {"prev": p.clone()} if self.momentum else {}

    def step(self, p, r, loss, grad, live, it):
        new = p + self.damping * self.problem.newton_step(r)
        if self.momentum:
            new = new + self.momentum * (p - self.state["prev"])
            self.state["prev"] = torch.where(rows(live, p), p, self.state["prev"])
        return new
