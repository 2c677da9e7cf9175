"""``solver=lbfgs``: limited-memory BFGS on the mean squared residual, per sample, with backtracking.

Adam follows the gradient with per-element scaling and converges sublinearly on an ill-conditioned least-squares
problem; a quasi-Newton direction learns the curvature along the path from the last ``memory`` pairs
s = p_k - p_{k-1}, y = g_k - g_{k-1} (Nocedal's two-loop recursion, initial scaling <s, y> / <y, y>) and takes unit
steps. Per sample, batched, no host sync:

- the first step (no pair yet) goes down the gradient by the size of the fixed-point correction at the current
  residual (as ``adam`` does), at most ``max_ratio`` times that size later;
- a trial is accepted when it lowers the loss by the Armijo condition (L <= L_prev + c g_prev^T (p - p_prev)); a
  pair enters the memory only with positive curvature (<s, y> > 0);
- a rejected trial is halved towards the last accepted point (backtracking, one iteration per halving); after
  ``max_halvings`` in a row (the loss's rounding floor, or a direction the memory got wrong) the memory is
  cleared and a shorter gradient step is tried from that point;
- a non-finite residual (the loop puts the sample back on its best iterate) clears its memory, and the gradient
  steps it restarts with are a quarter as long (twice as long again after each accepted step, at most the first).

One forward and one backward per iteration.
"""

from __future__ import annotations

import torch

from preciseinv.solvers.base import UpdateRule, dot, rms, rows, sq_norm


class LBFGS(UpdateRule):
    name = "lbfgs"
    uses_gradient = True
    restarts = True  # a non-finite trial: back to the best iterate, memory cleared

    def __init__(self, problem, memory: int = 64, armijo: float = 1e-4, max_ratio: float = 10.0,
                 max_halvings: int = 8):
        super().__init__(problem)
        self.memory, self.armijo, self.max_ratio, self.max_halvings = memory, armijo, max_ratio, max_halvings

    def initial_state(self, p):
        b, m = p.shape[0], self.memory
        return {"S": p.new_zeros(b, m, *p.shape[1:]), "Y": p.new_zeros(b, m, *p.shape[1:]),
                "rho": p.new_zeros(b, m),  # 1 / <s, y> per pair; 0: an empty slot (no effect on the direction)
                "prev_p": p.clone(), "prev_g": torch.zeros_like(p),
                "prev_loss": torch.full((b,), float("inf"), device=p.device),
                "has_prev": torch.zeros(b, dtype=torch.bool, device=p.device),
                "rejected": torch.zeros(b, dtype=torch.long, device=p.device),
                "scale": torch.ones(b, device=p.device),  # the gradient step's length, in fixed-point corrections
                **self.best_state(p)}

    def rejections(self):
        return self.state["rejected"]

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H g by the two-loop recursion over each sample's pairs (b, m, ...); the newest pair is slot 0."""
        s = self.state
        S, Y, rho = s["S"], s["Y"], s["rho"]
        q, alphas = g.clone(), []
        for i in range(self.memory):  # newest to oldest
            a = rho[:, i] * dot(S[:, i], q)  # (b,)
            q = q - rows(a, q) * Y[:, i]
            alphas.append(a)
        yy = dot(Y[:, 0], Y[:, 0])
        gamma = torch.where(rho[:, 0] > 0, 1 / (rho[:, 0] * yy).clamp_min(1e-30), 1.0)  # <s, y> / <y, y>
        z = rows(gamma, q) * q
        for i in reversed(range(self.memory)):  # oldest to newest
            beta = rho[:, i] * dot(Y[:, i], z)
            z = z + rows(alphas[i] - beta, z) * S[:, i]
        return -z

    def step(self, p, r, loss, grad, live, it):
        if grad is None:
            return p
        s = self.state
        has_grad = sq_norm(grad) != 0  # a sample without a gradient this iteration holds still
        self.track_best(p, loss, live & has_grad)
        bad = live & ~loss.isfinite()  # the loop has put it back on its best iterate: start afresh there
        ok = live & has_grad & loss.isfinite()
        moved = p - s["prev_p"]  # (b, ...) the trial step taken from the last accepted point
        sufficient = loss <= s["prev_loss"] + self.armijo * dot(s["prev_g"], moved)
        accept = ok & (~s["has_prev"] | sufficient)
        reject = ok & s["has_prev"] & ~sufficient
        # a new pair (accepted, after an accepted point, positive curvature) enters slot 0, the oldest drops out
        y = grad - s["prev_g"]
        sy = dot(moved, y)
        push = accept & s["has_prev"] & (sy > 1e-12 * dot(moved, moved).sqrt() * dot(y, y).sqrt())
        for key, new in (("S", moved), ("Y", y)):
            rolled = torch.cat([new[:, None], s[key][:, :-1]], 1)
            s[key] = torch.where(rows(push, rolled), rolled, s[key])
        rolled = torch.cat([(1 / sy.clamp_min(1e-30))[:, None], s["rho"][:, :-1]], 1)
        s["rho"] = torch.where(push[:, None], rolled, s["rho"])
        stuck = reject & (s["rejected"] + 1 >= self.max_halvings)  # give the memory up, shorten the gradient step
        s["scale"] = torch.where(bad | stuck, s["scale"] * 0.25,
                                 torch.where(accept & s["has_prev"], (s["scale"] * 2).clamp(max=1.0), s["scale"]))
        # the next trial from an accepted point: the quasi-Newton direction, or the scaled gradient with no pair
        size = s["scale"] * rms(self.problem.newton_step(r))  # (b,) the fixed-point correction's rms, scaled
        g_rms = rms(grad).clamp_min(1e-30)
        d = self._direction(grad)
        descent = dot(d, grad) < 0
        d = torch.where(rows(descent & (s["rho"][:, 0] > 0), d), d, -rows(size / g_rms, grad) * grad)
        d_rms = rms(d).clamp_min(1e-30)
        d = d * rows((self.max_ratio * size / d_rms).clamp(max=1.0), d)
        prev_g_rms = rms(s["prev_g"]).clamp_min(1e-30)
        restart = s["prev_p"] - rows(size / prev_g_rms, p) * s["prev_g"]  # a stuck sample: down the gradient
        halved = torch.where(rows(stuck, p), restart, s["prev_p"] + 0.5 * moved)  # a rejected trial: halve the step
        trial = torch.where(rows(accept, p), p + d, halved)
        s["prev_g"] = torch.where(rows(accept, p), grad, s["prev_g"])
        s["prev_loss"] = torch.where(accept, loss, s["prev_loss"])
        s["prev_p"] = torch.where(rows(accept | bad, p), p, s["prev_p"])
        s["has_prev"] = (s["has_prev"] | accept) & ~bad
        s["rejected"] = torch.where(accept | bad | stuck, 0, s["rejected"] + reject.long())
        forget = bad | stuck
        for key in ("S", "Y"):
            s[key] = torch.where(rows(forget, s[key]), 0, s[key])
        s["rho"] = torch.where(forget[:, None], 0, s["rho"])
        return torch.where(rows(accept | reject, p), trial, p)
