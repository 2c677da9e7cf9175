"""``solver=hybrid`` (the default): per sample, the cheapest rule that still makes progress.

Three phases, each sample on its own, always moving forwards:

1. ``anderson``: Anderson-accelerated fixed-point steps (one network forward each). On random-weight and
   latent models it converges in a handful of steps.
2. ``fixed_point`` with heavy-ball momentum (forward-only too), when Anderson stalls: its best residual fell by
   less than ``stall_ratio`` over ``window`` iterations, or ``patience`` steps in a row were rejected. On trained
   models the path to the solution is not monotone (the noise the network expects has to grow into x_t), which
   Anderson's least-squares mixing resists and momentum follows.
3. a gradient method (forward + backward): ``adam`` (default; step size following the residual, decayed on a
   plateau) or ``newton`` (GNRI's Newton-Raphson length, backtracking), when the fixed-point iteration diverges
   (its residual exceeds ``diverge`` x the best, or turns non-finite) or stalls over ``slow_window`` iterations
   (it wanders on its way, so it is judged over a longer window).

A sample switches only at sync points and always restarts from the best iterate it has seen, which is never
lost. The manifest records, per sample and step, which phase converged it.
"""

from __future__ import annotations

import torch

from preciseinv.solvers.adam import Adam
from preciseinv.solvers.anderson import Anderson
from preciseinv.solvers.base import UpdateRule, rows
from preciseinv.solvers.fixed_point import FixedPoint
from preciseinv.solvers.newton import Newton


class Hybrid(UpdateRule):
    name = "hybrid"
    restarts = True
    may_use_gradient = True  # its last phase; any sample may reach it

    def __init__(self, problem, memory: int = 5, momentum: float = 0.7, gradient: str = "adam",
                 stall_ratio: float = 0.5, window: int = 8, slow_window: int = 64, patience: int = 3,
                 diverge: float = 10.0):
        super().__init__(problem)
        if gradient not in ("adam", "newton"):
            from preciseinv.errors import PreciseInvError

            raise PreciseInvError(f"solver.gradient must be adam or newton, got {gradient!r}")
        last = {"adam": Adam, "newton": Newton}[gradient](problem)
        self.rules = (Anderson(problem, memory=memory), FixedPoint(problem, momentum=momentum), last)
        self.phases = tuple(rule.name for rule in self.rules)
        self.stall_ratio, self.window, self.slow_window = stall_ratio, window, slow_window
        self.patience, self.diverge = patience, diverge
        self._switched = 0

    def initial_state(self, p):
        b, dev = p.shape[0], p.device
        return {"phase": torch.zeros(b, dtype=torch.long, device=dev),
                "fresh": torch.zeros(b, dtype=torch.bool, device=dev),  # switched: restart from the best iterate
                **self.best_state(p),
                "loss": torch.full((b,), float("inf"), device=dev),  # the last residual seen
                "checkpoint": torch.full((b,), float("inf"), device=dev),  # best at the start of the window
                "count": torch.zeros(b, dtype=torch.long, device=dev)}  # iterations in the window

    def begin(self, p):
        super().begin(p)
        for rule in self.rules:
            rule.begin(p)
        self._present = [True, False, False]  # which phases have samples (known to the host: they change at syncs)

    def phase(self):
        return self.state["phase"]

    def needs_grad(self, live=None):
        """At each sync: move on the running samples whose phase stopped paying."""
        s = self.state
        phase, best = s["phase"], s["best"]
        window = torch.where(phase == 0, self.window, self.slow_window)
        due = s["count"] >= window
        stalled = due & (best > self.stall_ratio * s["checkpoint"])
        rejected = (phase == 0) & (self.rules[0].state["rejections"] >= self.patience)
        diverged = (phase == 1) & ~(s["loss"] <= self.diverge * best)  # includes a non-finite residual
        switch = (phase < 2) & (stalled | rejected | diverged) & best.isfinite()
        running = torch.ones_like(switch) if live is None else live  # finished rows and padding stay where they are
        switch = switch & running
        s["phase"] = phase + switch.long()
        s["fresh"] |= switch
        restart = due | switch
        s["checkpoint"] = torch.where(restart, best, s["checkpoint"])
        s["count"] = torch.where(restart, 0, s["count"])
        per_phase = torch.nn.functional.one_hot(s["phase"], 3).mul(running[:, None]).sum(0)  # (3,) running per phase
        counts = torch.cat([per_phase, switch.sum()[None]]).tolist()  # one host read
        self._present = [n > 0 for n in counts[:3]]  # a phase with no running sample takes no step
        self._switched += counts[3]
        if counts[3]:  # the next rule starts afresh from each switched sample's best iterate
            for k in (1, 2):
                self.rules[k].seed(switch & (s["phase"] == k), s["best_p"])
        return s["phase"] == 2

    def step(self, p, r, loss, grad, live, it):
        s = self.state
        self.track_best(p, loss, live)
        s["loss"] = torch.where(live, loss, s["loss"])
        s["count"] = s["count"] + live.long()
        fresh = live & s["fresh"]  # switched at the last sync: step onto the best iterate first
        out = p
        for k, rule in enumerate(self.rules):
            if self._present[k]:
                moving = live & (s["phase"] == k) & ~fresh
                out = torch.where(rows(moving, p), rule.step(p, r, loss, grad, moving, it), out)
        s["fresh"] &= ~fresh
        return torch.where(rows(fresh, p), s["best_p"], out)

    def switched(self) -> int:
        n, self._switched = self._switched, 0
        return n

    def select(self, keep):
        super().select(keep)
        for rule in self.rules:
            rule.select(keep)
