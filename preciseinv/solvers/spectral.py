"""``solver=spectral``: the fixed-point step with a per-sample length from the last two iterates (Barzilai-Borwein;
the spectral residual method of La Cruz & Raydan for nonlinear systems), forward-only.

With g(p) = -newton_step(r(p)) (the frozen-slope fixed-point step, reversed), the plain iteration is p <- p - g.
On a trained model at a high timestep most of the Jacobian's spectrum lies far below the frozen slope, so that
step is too short in most directions. The secant pair s = p_k - p_{k-1}, y = g_k - g_{k-1} measures the slope
along the path actually taken, and

    p <- p - alpha g,     alpha = <s, s> / <s, y>   (clamped to [alpha_min, alpha_max]; 1 on the first step)

takes the step that slope calls for: one network forward per iteration, one scalar per sample, no host sync.
Where <s, y> <= 0 (no positive curvature along s) the last alpha is kept; after a non-finite residual the sample
starts afresh (alpha = 1) from where the loop puts it back. The iteration is not monotone: as a hybrid phase it is
judged on its best residual over the slow window, never switched for a residual above its best.
"""

from __future__ import annotations

import torch

from preciseinv.solvers.base import UpdateRule, rows, secant_length


class Spectral(UpdateRule):
    name = "spectral"

    def __init__(self, problem, alpha_min: float = 0.1, alpha_max: float = 100.0):
        super().__init__(problem)
        self.alpha_min, self.alpha_max = alpha_min, alpha_max

    def initial_state(self, p):
        # prev_p = p: the first step has no secant pair (s = 0) and takes alpha = 1
        return {"prev_p": p.clone(), "prev_g": torch.zeros_like(p), "alpha": torch.ones(p.shape[0], device=p.device)}

    def step(self, p, r, loss, grad, live, it):
        s = self.state
        g = -self.problem.newton_step(r)  # (b, P, h, w)
        length = secant_length(p - s["prev_p"], g - s["prev_g"])  # (b,); no pair yet (s = 0): NaN
        alpha = torch.where(length.isnan(), s["alpha"], length.clamp(self.alpha_min, self.alpha_max))
        moved, bad = live & loss.isfinite(), live & ~loss.isfinite()
        # a non-finite residual: the loop has put the sample back on its best iterate; start afresh from there
        s["alpha"] = torch.where(moved, alpha, torch.where(bad, 1.0, s["alpha"]))
        s["prev_p"] = torch.where(rows(live, p), p, s["prev_p"])
        s["prev_g"] = torch.where(rows(moved, g), g, s["prev_g"])
        return torch.where(rows(bad, p), p, p - rows(alpha, p) * g)
