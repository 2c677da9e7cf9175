"""``solver=anderson``: Anderson acceleration of the fixed-point map G(p) = p + newton_step(r(p)), forward-only.

Type-II Anderson mixing (Walker & Ni 2011), as AIDI (Pan et al., ICCV 2023) applies it to diffusion inversion:
with f_i = G(p_i) - p_i and the last ``memory`` differences dP, dF of iterates and corrections,

    gamma = argmin ||f_k - dF gamma||^2  (ridge-regularised)          p_{k+1} = p_k + f_k - (dP + dF) gamma.

Per sample, with a safeguard: an iterate whose residual is worse than ``safeguard`` x the best seen is rejected,
the sample's history is cleared and it takes the plain fixed-point step from its best iterate, halved at each
consecutive rejection (a backtracking line search along G). ``rejections`` counts them (the hybrid reads it).
"""

from __future__ import annotations

import torch

from preciseinv.solvers.base import UpdateRule, rows, secant_length


class Anderson(UpdateRule):
    name = "anderson"
    restarts = True  # a non-finite residual is a rejected step: back to the best iterate, damped

    def __init__(self, problem, memory: int = 5, mixing: float = 1.0, safeguard: float = 1.0, ridge: float = 1e-8):
        super().__init__(problem)
        self.memory, self.mixing, self.safeguard, self.ridge = memory, mixing, safeguard, ridge

    def initial_state(self, p):
        b, D = p.shape[0], p[0].numel()
        z = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype, device=p.device)  # noqa: E731
        return {
            "dP": z(b, self.memory, D), "dF": z(b, self.memory, D),  # (b, m, D) newest first
            "valid": z(b, self.memory, dtype=torch.bool),  # (b, m)
            "p_last": z(b, D), "f_last": z(b, D), "has_last": z(b, dtype=torch.bool),
            **self.best_state(p, f=torch.zeros_like(p)),
            "damping": torch.ones(b, device=p.device), "rejections": z(b, dtype=torch.long),
        }

    def step(self, p, r, loss, grad, live, it):
        s, f = self.state, self.problem.newton_step(r)  # (b, P, h, w)
        better = self.track_best(p, loss, live, f=f)
        reject = live & ~(loss <= self.safeguard * s["best"])  # worse than allowed, or non-finite
        accept = live & ~reject
        s["rejections"] = torch.where(reject, s["rejections"] + 1, torch.where(better, 0, s["rejections"]))
        s["damping"] = torch.where(reject, s["damping"] * 0.5, torch.where(better, 1.0, s["damping"]))
        # history: push (p - p_last, f - f_last) for accepted samples that have a previous point
        pf, ff = p.flatten(1), f.flatten(1)  # (b, D)
        push = accept & s["has_last"]
        dP = torch.cat([(pf - s["p_last"])[:, None], s["dP"][:, :-1]], 1)
        dF = torch.cat([(ff - s["f_last"])[:, None], s["dF"][:, :-1]], 1)
        valid = torch.cat([push[:, None], s["valid"][:, :-1]], 1)
        s["dP"] = torch.where(push[:, None, None], dP, s["dP"])
        s["dF"] = torch.where(push[:, None, None], dF, s["dF"])
        s["valid"] = torch.where(push[:, None], valid, s["valid"]) & ~reject[:, None]
        s["p_last"] = torch.where(accept[:, None], pf, s["p_last"])
        s["f_last"] = torch.where(accept[:, None], ff, s["f_last"])
        s["has_last"] = (s["has_last"] | accept) & ~reject
        mixed = (pf + self.mixing * ff - self._correction(s["dP"], s["dF"], s["valid"], ff)).view_as(p)
        fallback = s["best_p"] + rows(s["damping"], p) * s["best_f"]
        return torch.where(rows(reject, p), fallback, mixed)

    def rejections(self) -> torch.Tensor:
        return self.state["rejections"]

    def secant_length(self) -> torch.Tensor:
        """(b,) the length of each sample's newest step pair in its history, in units of the fixed-point step:
        <s, s> / <s, y> with s = dP, y = -dF (the Barzilai-Borwein length; f = newton_step(r) is minus the step's
        gradient). NaN where the history holds no pair (a rejection clears it) or the pair shows no positive
        curvature. Above 1 the frozen slope overstates the slope along the path: its steps are too short."""
        s = self.state
        length = secant_length(s["dP"][:, 0], -s["dF"][:, 0])  # (b,) the newest pair
        return torch.where(s["valid"][:, 0], length, float("nan"))

    def _correction(self, dP, dF, valid, f):
        """(dP + mixing dF) gamma with gamma = argmin ||f - dF gamma||^2 over the valid history (b, D)."""
        if self.memory == 0:
            return torch.zeros_like(f)
        m = valid.double()  # (b, m)
        F = dF.double() * m[..., None]  # (b, m, D)
        A = F @ F.transpose(1, 2)  # (b, m, m)
        scale = A.diagonal(dim1=1, dim2=2).sum(1).clamp_min(1e-300) / self.memory  # (b,)
        A = A + (self.ridge * scale + 1e-300)[:, None, None] * torch.eye(self.memory, dtype=A.dtype, device=A.device)
        # solve_ex: A is positive definite (ridge), and solve would read its error flag on the host each step
        gamma = torch.linalg.solve_ex(A, F @ f.double()[..., None])[0] * m[..., None]  # (b, m, 1)
        return ((dP + self.mixing * dF).double().transpose(1, 2) @ gamma).squeeze(-1).float()  # (b, D)

