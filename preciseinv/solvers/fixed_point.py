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

    def __init__(self, problem, damping: float = 1.0, momentum: float = 0.0, long_step: float | None = None,
                 long_below: float = 0.95, probes: int = 6):
        super().__init__(problem)
        self.damping, self.momentum = damping, momentum
        # long_step: each sample first probes the top of its step's spectrum (probes finite-difference forwards,
        # power iteration on the Jacobian in frozen-slope units) and takes damping long_step where it is below
        # long_below (the heavy ball stays stable for eigenvalues below 2 (1 + momentum) / long_step)
        if long_step is not None and not long_step > 0:
            from preciseinv.errors import PreciseInvError

            raise PreciseInvError(f"solver long_step must be > 0 (null: no probe), got {long_step}")
        # the top a sample may have to take the long step: long_below, and within the heavy ball's stability bound
        # at that step (with a margin for a probe that reads the top a little low)
        self.long_step, self.probes = long_step, probes
        self.long_below = None if long_step is None else min(long_below, 0.9 * 2 * (1 + momentum) / long_step)
        if long_step is not None:
            from preciseinv.solvers.newton_krylov import finite_difference_scale

            self.fd = finite_difference_scale(problem)

    def initial_state(self, p):
        state = {"prev": p.clone()} if self.momentum else {}
        if self.long_step is not None:
            b = p.shape[0]
            state.update(k=torch.zeros(b, dtype=torch.long, device=p.device),  # probes taken; -1: done
                         base_p=p.clone(), base_r=torch.zeros_like(p), v=torch.zeros_like(p),
                         h=torch.zeros(b, device=p.device), top=torch.zeros(b, device=p.device),
                         damping=torch.full((b,), float(self.damping), device=p.device))
        return state

    def step(self, p, r, loss, grad, live, it):
        if self.long_step is not None:
            return self._probed_step(p, r, live)
        new = p + self.damping * self.problem.newton_step(r)
        if self.momentum:
            new = new + self.momentum * (p - self.state["prev"])
            self.state["prev"] = torch.where(rows(live, p), p, self.state["prev"])
        return new

    def _probed_step(self, p, r, live):
        """Power iteration first (each probe one forward at base + h v), then the heavy ball at the step it allows."""
        s = self.state
        norm = lambda x: x.flatten(1).norm(dim=1).clamp_min(1e-30)  # noqa: E731  (b,)
        start = live & (s["k"] == 0)  # p is the sample's base point, r its residual: the first probe along r
        step_r = self.problem.newton_step(r)  # (b, P, ...) the fixed-point correction at p
        s["base_p"] = torch.where(rows(start, p), p, s["base_p"])
        s["base_r"] = torch.where(rows(start, p), step_r, s["base_r"])  # kept as its correction, in P space
        probing = live & (s["k"] > 0)
        a_v = (s["base_r"] - step_r) / rows(s["h"].clamp_min(1e-30), p)  # (b, P, ...) A v, A = -N J
        top = norm(a_v)  # |A v| with |v| = 1: the dominant eigenvalue's size, once the iteration settles
        s["top"] = torch.where(probing & (s["k"] > self.probes - 3), torch.maximum(s["top"], top), s["top"])
        v = torch.where(rows(start, p), -step_r, a_v)
        v = v / rows(norm(v), v)
        s["v"] = torch.where(rows(start | probing, p), v, s["v"])
        s["h"] = torch.where(start, self.fd * (1 + norm(p)), s["h"])
        done = probing & (s["k"] >= self.probes)
        chosen = torch.where(s["top"] <= self.long_below, self.long_step, self.damping)
        s["damping"] = torch.where(done, chosen, s["damping"])
        s["k"] = torch.where(done, -1, torch.where(start | probing, s["k"] + 1, s["k"]))
        probe = s["base_p"] + rows(s["h"], p) * s["v"]
        stepping = live & (s["k"] < 0)
        base = torch.where(rows(done, p), s["base_p"], p)  # the heavy ball starts from the base point
        correction = torch.where(rows(done, p), s["base_r"], step_r)
        new = base + rows(s["damping"], p) * correction
        if self.momentum:
            prev = torch.where(rows(done, p), s["base_p"], s["prev"])
            new = new + self.momentum * (base - prev)
            s["prev"] = torch.where(rows(stepping, p), base, s["prev"])
        return torch.where(rows(stepping, p), new, torch.where(rows(live, p), probe, p))
