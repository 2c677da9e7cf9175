"""``solver=hybrid`` (the default): per sample, the cheapest rule that still makes progress.

Phases (``phases``, in order; each sample on its own, always moving forwards), by default:

1. ``anderson``: Anderson-accelerated fixed-point steps (one network forward each). On random-weight and
   latent models it converges in a handful of steps.
2. ``fixed_point`` with heavy-ball momentum (forward-only too), when Anderson stalls: its best residual fell by
   less than ``stall_ratio`` over ``window`` iterations, or ``patience`` steps in a row were rejected. On trained
   models the path to the solution is not monotone (the noise the network expects has to grow into x_t), which
   Anderson's least-squares mixing resists and momentum follows. Its step is ``damping`` (2) times the
   fixed-point correction, with ``momentum`` 0.6: on a trained network the Jacobian of mu, in units of the frozen
   slope, has most of its spectrum between 0.02 and 0.1 and its top at most 1.33 (measured), and the heavy ball is
   stable for real eigenvalues below 2 (1 + momentum) / damping = 1.6 while it contracts the small ones faster
   than at damping 1.
3. ``newton_krylov`` (forward-only: GMRES on finite-difference Jacobian-vector products, a line search), for
   a steep sample only (below), when the fixed-point iteration diverges (its residual exceeds ``diverge`` x the
   best, or turns non-finite) or stalls over ``slow_window`` iterations (it wanders on its way, so it is judged
   over a longer window). Where the map is nearly linear (a trained network's top step) a short Krylov solve
   finishes what the fixed point does slowly; ``krylov_patience`` failed Newton steps in a row move a sample on.
4. a gradient method (forward + backward), when the phase before it stops paying: ``lbfgs`` (limited-memory BFGS
   on the mean squared residual over ``lbfgs_memory`` secant pairs, Armijo backtracking), which learns from its
   own path the curvature the frozen slope misses: on random networks whose Jacobian is far from it, and down to
   eta = 1e-5, it converges where Adam's per-element steps crawl (docs/solvers.md).

Other phases a list may name: ``spectral`` (the fixed-point step at a Barzilai-Borwein length), ``adam`` (Adam
directions, step size following the residual), ``newton`` (GNRI's Newton-Raphson length) and ``adamw`` (the paper's
AdamW at the preset learning rate ``lr``). A rule that judges its own steps counts the failed ones in a row
(``rejections``: Anderson's rejected steps; ``newton_krylov``'s Newton steps whose Krylov solve ran out of vectors
short of its forcing term, or whose line search gave up): ``patience`` of them (``krylov_patience`` in a
``newton_krylov`` phase, whose Newton step costs up to its memory + 1 forwards) also move the sample on
(``krylov_lm``: that phase's Levenberg-Marquardt damping instead of its line search; off, measured no better). With
``budget`` a phase also stalls when, at the rate its window measured, it would not reach eta within the iterations
left. With ``split`` (a number, 1.5 by default) the phases of ``steep_only`` (by default ``newton_krylov``) that
follow an Anderson phase are for steep samples only (a list without such a phase routes nothing): when Anderson's
first window ends each sample reads the length of its newest step pair in fixed-point steps
(``Anderson.secant_length``); above ``split`` the frozen slope overstates the slope along its path (trained networks
at high timesteps, v-prediction) and the sample is steep. The others (and a sample that left Anderson before the
reading) go past those phases when they move on, never past the last phase.

A sample switches only at sync points and always restarts from the best iterate it has seen, which is never
lost; what it spent in each phase counts against the one cap. The manifest records, per sample and step, which
phase converged it.
"""

from __future__ import annotations

import torch

from preciseinv.solvers.adam import Adam
from preciseinv.solvers.adamw import AdamW
from preciseinv.solvers.anderson import Anderson
from preciseinv.solvers.base import UpdateRule, rows
from preciseinv.solvers.fixed_point import FixedPoint
from preciseinv.solvers.lbfgs import LBFGS
from preciseinv.solvers.newton import Newton
from preciseinv.solvers.newton_krylov import NewtonKrylov
from preciseinv.solvers.spectral import Spectral


# the rules a phase may name; each is built with the hybrid's settings it takes
PHASES = {"anderson": Anderson, "fixed_point": FixedPoint, "newton_krylov": NewtonKrylov, "adam": Adam,
          "newton": Newton, "adamw": AdamW, "spectral": Spectral, "lbfgs": LBFGS}


class Hybrid(UpdateRule):
    name = "hybrid"
    restarts = True
    may_use_gradient = True  # its last phases; any sample may reach them

    def __init__(self, problem, phases=("anderson", "fixed_point", "newton_krylov", "lbfgs"), memory: int = 5,
                 momentum: float = 0.6, damping: float = 2.0, stall_ratio: float = 0.5, window: int = 8,
                 slow_window: int = 64, patience: int = 3, krylov_patience: int = 2, diverge: float = 10.0,
                 lr: float = 0.1, budget: bool = False, spectral_window: int | None = None, split: float | None = 1.5,
                 steep_only=("newton_krylov",), lbfgs_memory: int = 64, krylov_lm: float | None = None,
                 long_step: float | None = None):
        super().__init__(problem)
        for key, value in (("krylov_lm", krylov_lm), ("long_step", long_step)):
            if value is not None and not value > 0:
                from preciseinv.errors import PreciseInvError

                raise PreciseInvError(f"solver.{key} must be > 0 (null: off), got {value}")
        unknown = [name for name in phases if name not in PHASES]
        if unknown or not phases:
            from preciseinv.errors import PreciseInvError

            raise PreciseInvError(f"solver.phases: unknown phase(s) {unknown or phases}; each is one of "
                                  f"{', '.join(PHASES)}")
        fixed = {"momentum": momentum, "damping": damping, **({"long_step": long_step} if long_step else {})}
        settings = {"anderson": {"memory": memory}, "fixed_point": fixed,
                    "adamw": {"lr": lr, "returns_best": True}, "lbfgs": {"memory": lbfgs_memory},
                    "newton_krylov": {"lm_damping": krylov_lm}}
        self.rules = tuple(PHASES[name](problem, **settings.get(name, {})) for name in phases)
        self.phases = tuple(phases)
        # per phase: (is Anderson, is the fixed point, uses a gradient, is spectral); made tensors at sync points only
        self._kinds = [(isinstance(r, Anderson), isinstance(r, FixedPoint), r.uses_gradient, isinstance(r, Spectral))
                       for r in self.rules]
        self.spectral_window = slow_window if spectral_window is None else spectral_window
        # split routes the steep-only phases that follow an Anderson phase (which reads the slope); with none such
        # in the list, every sample enters each phase in turn
        routed = any(a == "anderson" and set(steep_only) & set(phases[i + 1:]) for i, a in enumerate(phases))
        self.split = split if routed else None
        # per phase: where a sample that is not steep goes when it moves on (past the steep-only phases, not the last)
        self._next_flat = [next((j for j in range(k + 1, len(phases)) if phases[j] not in steep_only),
                                len(phases) - 1) for k in range(len(phases))]
        self.stall_ratio, self.window, self.slow_window = stall_ratio, window, slow_window
        self.diverge = diverge
        # per phase: failed steps in a row that move a sample on (a Newton step costs up to memory + 1 forwards)
        self._patience = [krylov_patience if isinstance(r, NewtonKrylov) else patience for r in self.rules]
        self.budget = budget
        self._switched, self._it = 0, 0

    def initial_state(self, p):
        b, dev = p.shape[0], p.device
        return {"phase": torch.zeros(b, dtype=torch.long, device=dev),
                "fresh": torch.zeros(b, dtype=torch.bool, device=dev),  # switched: restart from the best iterate
                **self.best_state(p),
                "loss": torch.full((b,), float("inf"), device=dev),  # the last residual seen
                "checkpoint": torch.full((b,), float("inf"), device=dev),  # best at the start of the window
                "count": torch.zeros(b, dtype=torch.long, device=dev),  # iterations in the window
                "probed": torch.zeros(b, dtype=torch.bool, device=dev),  # the slope along the path was read
                "steep": torch.zeros(b, dtype=torch.bool, device=dev)}  # ... and the frozen slope overstates it

    def begin(self, p):
        super().begin(p)
        for rule in self.rules:
            rule.eta = self.eta
            rule.begin(p)
        self._present = [True] + [False] * (len(self.rules) - 1)  # phases with samples (the host knows at syncs)

    def phase(self):
        return self.state["phase"]

    def needs_grad(self, live=None):
        """At each sync: move on the running samples whose phase stopped paying."""
        s, n = self.state, len(self.rules)
        phase, best = s["phase"], s["best"]
        kinds = torch.tensor(self._kinds, device=phase.device)[phase]  # (b, 4) each sample's phase's kind
        anderson, fixed_point, spectral = kinds[:, 0], kinds[:, 1], kinds[:, 3]
        window = torch.where(anderson, self.window, self.slow_window)  # Anderson is judged fast, the others slow
        window = torch.where(spectral, self.spectral_window, window)  # non-monotone too, but quick to pay or not
        due = s["count"] >= window
        stalled = due & (best > self.stall_ratio * s["checkpoint"])
        if self.budget and self.eta and self.max_iters:  # or: at its rate, it would not reach eta in the iterations left
            rate = (best / s["checkpoint"]).log() / s["count"].clamp_min(1)  # (b,) log-residual per iteration
            need = torch.where(rate < 0, (self.eta / best).log() / rate, float("inf"))
            stalled = stalled | (due & (need > self.max_iters - self._it))
        rejected = torch.zeros_like(phase, dtype=torch.bool)  # (b,) its rule judged `patience` steps in a row failed
        length = torch.full_like(best, float("nan"))  # (b,) Anderson's secant length; NaN: no reading (never steep)
        for k, rule in enumerate(self.rules):
            if not self._present[k]:  # no running sample in this phase
                continue
            count = rule.rejections()
            if count is not None:
                rejected = torch.where(phase == k, count >= self._patience[k], rejected)
            if isinstance(rule, Anderson) and self.split is not None:
                length = torch.where(phase == k, rule.secant_length(), length)
        diverged = fixed_point & ~(s["loss"] <= self.diverge * best)  # includes a non-finite residual
        if self.split is not None:  # after Anderson's first window each sample reads the slope along its path
            reading = anderson & due & ~s["probed"]
            s["steep"] |= reading & (length > self.split)  # the frozen slope overstates it
            s["probed"] |= reading
        switch = (phase < n - 1) & (stalled | rejected | diverged) & best.isfinite()
        running = torch.ones_like(switch) if live is None else live  # finished rows and padding stay where they are
        switch = switch & running
        step = torch.ones_like(phase)  # (b,) how far a switch moves each sample
        if self.split is not None:  # past the steep-only phases for a sample that is not steep
            flat = torch.tensor(self._next_flat, device=phase.device)[phase] - phase
            step = torch.where(s["steep"], step, flat)
        s["phase"] = phase + switch.long() * step
        s["fresh"] |= switch
        restart = due | switch
        s["checkpoint"] = torch.where(restart, best, s["checkpoint"])
        s["count"] = torch.where(restart, 0, s["count"])
        per_phase = torch.nn.functional.one_hot(s["phase"], n).mul(running[:, None]).sum(0)  # (n,) running per phase
        counts = torch.cat([per_phase, switch.sum()[None]]).tolist()  # one host read
        self._present = [c > 0 for c in counts[:n]]  # a phase with no running sample takes no step
        self._switched += counts[n]
        if counts[n]:  # the next rule starts afresh from each switched sample's best iterate
            for k in range(1, n):
                self.rules[k].seed(switch & (s["phase"] == k), s["best_p"])
        return torch.tensor(self._kinds, device=phase.device)[s["phase"], 2]  # the samples in a gradient phase

    def step(self, p, r, loss, grad, live, it):
        self._it = it
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
