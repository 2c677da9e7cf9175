"""``solver=newton_krylov``: Jacobian-free Newton-Krylov, forward-only, with a backtracking line search.

Each Newton step solves  J d = -r  approximately by GMRES (Saad & Schultz 1986), where every Jacobian-vector
product is a finite difference of the residual, one network forward:

    J v ~ (r(p + h v) - r(p)) / h          (v of unit norm; h = sqrt(machine eps of the network's dtype) (1 + |p|))

The Arnoldi basis grows until the GMRES residual estimate is below the forcing term (Eisenstat & Walker 1996,
choice 2: the inner solve gets more precise as the outer iteration converges, and never more precise than what
lands the residual at eta / 4) or ``memory`` vectors are used; then the step p + lam d is tried with lam = 1 and
halved until the residual falls (Armijo's condition). A sample whose line search fails ``max_halvings`` times
keeps its best iterate, starts a new Krylov space there and counts a failure; a Krylov solve that uses all
``memory`` vectors short of its forcing term counts as unsolved. The hybrid reads both (``rejections``).

Everything happens per sample inside the batched loop: each loop iteration evaluates one point per sample, a
Krylov probe or a trial step, so a Newton step of j inner iterations costs j + 1 forwards and no backward. With
the frozen-slope model J ~ g I the Krylov space starts along the fixed-point step, so on a nearly linear problem
the first Newton step is that step and GMRES only adds what the network's own dependence on x_t needs.

With ``lm_damping`` set, the step is globalised by a trust region instead of the line search: Levenberg-Marquardt
damping inside the Krylov space, y = argmin |beta e1 - H y|^2 + mu s |y|^2 (s: the mean squared column norm of H,
mu starting at ``lm_damping``). A trial is taken when its actual decrease of |r|^2 is a positive share rho of what
the linear model predicted; then mu shrinks by max(1/3, 1 - (2 rho - 1)^3) (Nielsen 1999); a rejected trial
multiplies mu by 2, 4, 8, ... and tries again from the same Krylov space, one forward, so the step bends from
the Newton direction towards the damped one (where the Jacobian has eigenvalues near 0 the Newton step is long
along them) instead of shortening along it. ``max_halvings`` rejections in a row give the direction up.
"""

from __future__ import annotations

import torch

from preciseinv.solvers.base import UpdateRule, rows


def finite_difference_scale(problem) -> float:
    """sqrt(machine eps) of the precision the network computes in (autocast's when on): the relative finite-
    difference step that balances truncation against rounding."""
    p = problem.eps
    dtype = torch.get_autocast_dtype(p.device.type) if torch.is_autocast_enabled(p.device.type) else None
    owner = getattr(problem.denoiser, "__self__", problem.denoiser)
    dtype = dtype or getattr(owner, "dtype", None) or torch.float32
    return float(torch.finfo(dtype).eps) ** 0.5


class NewtonKrylov(UpdateRule):
    name = "newton_krylov"
    restarts = True  # a non-finite trial is a rejected one

    def __init__(self, problem, memory: int = 8, forcing: float = 0.5, max_halvings: int = 6,
                 fd_scale: float | None = None, lm_damping: float | None = None):
        super().__init__(problem)
        self.memory, self.forcing0, self.max_halvings = memory, forcing, max_halvings
        if lm_damping is not None and not lm_damping > 0:
            from preciseinv.errors import PreciseInvError

            raise PreciseInvError(f"solver lm_damping must be > 0 (null: the line search), got {lm_damping}")
        self.lm = lm_damping  # None: Armijo line search along the Newton step; a number: mu's start
        self.fd = fd_scale if fd_scale is not None else finite_difference_scale(problem)

    def initial_state(self, p):
        b, D, m, dev = p.shape[0], p[0].numel(), self.memory, p.device
        z = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype, device=dev)  # noqa: E731
        return {
            "probing": z(b, dtype=torch.bool),  # the point returned last is a Krylov probe (else a trial step)
            "base_p": p.flatten(1).clone(), "base_r": z(b, D),  # (b, D) the accepted iterate and its residual
            "base_loss": torch.full((b,), float("inf"), device=dev),
            "V": z(b, m + 1, D), "H": z(b, m + 1, m, dtype=torch.float64),  # Arnoldi basis and Hessenberg matrix
            "beta": z(b), "j": z(b, dtype=torch.long), "h": z(b),  # |r| at the base, basis size, probe step
            "d": z(b, D), "lam": torch.ones(b, device=dev), "halvings": z(b, dtype=torch.long),
            "forcing": torch.full((b,), self.forcing0, device=dev), "failures": z(b, dtype=torch.long),
            "unsolved": z(b, dtype=torch.long),  # Krylov solves in a row that ended short of their forcing
            "mu": torch.full((b,), self.lm or 0.0, device=dev), "nu": torch.full((b,), 2.0, device=dev),  # LM damping
            "pred": z(b),  # the decrease of the mean squared residual the linear model predicts for the trial (LM)
        }

    def step(self, p, r, loss, grad, live, it):
        s, shape = self.state, p.shape
        pf, rf = p.flatten(1), r.flatten(1).float()  # (b, D)
        finite = loss.isfinite()
        probe = live & s["probing"]
        trial = live & ~s["probing"]

        # trial steps: accept on sufficient decrease, else halve lam (a failed line search restarts at the base);
        # with LM damping: accept where the decrease is a positive share of the predicted one, else raise mu
        if self.lm is None:
            accept = trial & finite & (loss <= (1 - 1e-4 * s["lam"]) * s["base_loss"])
        else:
            gain = (s["base_loss"] - loss) / s["pred"].clamp_min(1e-30)  # (b,) rho; inf at the first point
            accept = trial & finite & (loss < s["base_loss"]) & (gain > 1e-4)
            shrink = (1 - (2 * gain.clamp(max=1.0) - 1) ** 3).clamp(min=1 / 3)
            taken = accept & s["base_loss"].isfinite()
            s["mu"] = torch.where(taken, (s["mu"] * shrink).clamp_min(1e-10), s["mu"])
            s["nu"] = torch.where(taken, 2.0, s["nu"])
        reject = trial & ~accept
        s["halvings"] = torch.where(reject, s["halvings"] + 1, torch.where(accept, 0, s["halvings"]))
        give_up = reject & (s["halvings"] > self.max_halvings)
        s["failures"] = torch.where(give_up, s["failures"] + 1, torch.where(accept, 0, s["failures"]))
        s["halvings"] = torch.where(give_up, 0, s["halvings"])
        s["lam"] = torch.where(reject, s["lam"] * 0.5, s["lam"])
        if self.lm is not None:  # a rejected trial: more damping, the same Krylov space (lam stays 1)
            s["mu"] = torch.where(reject & ~give_up, s["mu"] * s["nu"], s["mu"])
            s["nu"] = torch.where(give_up, 2.0, torch.where(reject, s["nu"] * 2, s["nu"]))
            s["lam"] = torch.ones_like(s["lam"])
        # Eisenstat-Walker choice 2: forcing = 0.9 (|r_new| / |r_old|)^2, safeguarded, within [0.01, 0.9]
        norm = rf.norm(dim=1)
        ratio = (norm / s["beta"].clamp_min(1e-30)).pow(2)
        ew = torch.maximum(0.9 * ratio, torch.where(0.9 * s["forcing"] ** 2 > 0.1, 0.9 * s["forcing"] ** 2, 0.0))
        first = accept & ~s["base_loss"].isfinite()
        s["forcing"] = torch.where(accept, torch.where(first, self.forcing0, ew.clamp(0.01, 0.9)), s["forcing"])
        s["forcing"] = torch.where(give_up, 0.01, s["forcing"])  # the direction failed: solve the next one fully
        s["base_p"] = torch.where(accept[:, None], pf, s["base_p"])
        s["base_r"] = torch.where(accept[:, None], rf, s["base_r"])
        s["base_loss"] = torch.where(accept, loss, s["base_loss"])
        restart = accept | give_up  # a new Krylov space at the base
        beta = s["base_r"].norm(dim=1)  # (b,)
        s["beta"] = torch.where(restart, beta, s["beta"])
        v0 = -s["base_r"] / beta.clamp_min(1e-30)[:, None]
        s["V"] = torch.where(restart[:, None, None], torch.cat([v0[:, None], torch.zeros_like(s["V"][:, 1:])], 1),
                             s["V"])
        s["H"] = torch.where(restart[:, None, None], 0.0, s["H"])
        s["j"] = torch.where(restart, 0, s["j"])
        s["h"] = torch.where(restart, self.fd * (1 + s["base_p"].norm(dim=1)), s["h"])

        # Krylov probes: the finite difference is J v_j; Arnoldi adds it to the basis (classical Gram-Schmidt twice)
        j = s["j"]
        w = (rf - s["base_r"]) / s["h"][:, None]  # (b, D)
        valid = (torch.arange(self.memory + 1, device=p.device)[None] <= j[:, None]).float()  # (b, m + 1)
        coef = torch.zeros_like(valid)
        for _ in range(2):
            c = torch.einsum("bkd,bd->bk", s["V"], w) * valid  # (b, m + 1)
            w = w - torch.einsum("bkd,bk->bd", s["V"], c)
            coef = coef + c
        nrm = w.norm(dim=1)  # (b,)
        broken = probe & ~(finite & (nrm > 1e-7 * s["beta"]))  # a non-finite probe or a lucky breakdown
        grow = probe & ~broken
        slots = torch.arange(self.memory + 1, device=p.device)[None]  # (1, m + 1); one_hot would read j on the host
        col = (slots[:, :-1] == j[:, None]).double()  # (b, m) column j
        below = slots == (j + 1)[:, None]  # (b, m + 1) row j + 1
        newcol = coef.double() + below.double() * nrm.double()[:, None]  # column j of H: coefficients, then |w|
        s["H"] = torch.where(grow[:, None, None], s["H"] + newcol[:, :, None] * col[:, None, :], s["H"])
        v_new = w / nrm.clamp_min(1e-30)[:, None]
        s["V"] = torch.where(grow[:, None, None], s["V"] + below.float()[:, :, None] * v_new[:, None, :], s["V"])
        s["j"] = torch.where(grow, j + 1, j)

        # the GMRES solution in the current basis: min |beta e1 - H y| over the first j columns
        j = s["j"]
        y, est = self._least_squares(s["H"], s["beta"], j)
        target = 0.5 * (self.eta * pf.shape[1]) ** 0.5 if self.eta else 0.0  # |r| that lands at eta / 4
        enough = est <= torch.maximum(s["forcing"] * s["beta"], torch.full_like(est, target))
        solved = probe & (broken | (j >= self.memory) | enough) & (j > 0)
        short = solved & ~enough & ~broken  # the basis ran out first: a short Krylov solve cannot model J here
        s["unsolved"] = torch.where(short, s["unsolved"] + 1, torch.where(solved, 0, s["unsolved"]))
        stuck = probe & broken & (j == 0)  # no direction at all: the fixed-point step
        d = torch.einsum("bkd,bk->bd", s["V"][:, :-1], y.float())  # (b, D)
        fixed = self.problem.newton_step(s["base_r"].view(shape)).flatten(1)
        s["d"] = torch.where(solved[:, None], d, torch.where(stuck[:, None], fixed, s["d"]))
        if self.lm is not None:  # the damped step in the same space, for a new solve or after a rejected trial
            again = solved | (reject & ~give_up & ~stuck)
            y_lm, est_lm = self._least_squares(s["H"], s["beta"], j, ridge=s["mu"])
            d_lm = torch.einsum("bkd,bk->bd", s["V"][:, :-1], y_lm.float())
            s["d"] = torch.where(again[:, None], d_lm, s["d"])
            D = pf.shape[1]
            pred = (s["beta"].pow(2) - est_lm.pow(2)) / D  # (b,) the linear model's decrease of the mean square
            s["pred"] = torch.where(again, pred, torch.where(stuck, s["beta"].pow(2) / D, s["pred"]))
        s["lam"] = torch.where(solved | stuck, 1.0, s["lam"])
        s["probing"] = torch.where(restart, True, torch.where(solved | stuck, False, s["probing"]))

        vj = s["V"].gather(1, j.clamp(max=self.memory)[:, None, None].expand(-1, 1, pf.shape[1]))[:, 0]  # (b, D)
        out = torch.where(s["probing"][:, None], s["base_p"] + s["h"][:, None] * vj,
                          s["base_p"] + s["lam"][:, None] * s["d"])
        return torch.where(rows(live, p), out.view(shape), p)

    def rejections(self) -> torch.Tensor:
        """(b,) Newton steps in a row that failed: their Krylov solve ran out of vectors short of its forcing term
        (where the Jacobian has eigenvalues on both sides of 0, as a trained network's has at t ~ 500, GMRES of a
        few vectors removes little of the residual) or their line search gave up."""
        return self.state["unsolved"] + self.state["failures"]

    def _least_squares(self, H: torch.Tensor, beta: torch.Tensor, j: torch.Tensor, ridge=None):
        """(y (b, m), |beta e1 - H y| (b,)) over the first j columns (ridge-regularised normal equations, fp64);
        ``ridge`` (b,): LM damping mu, in units of the mean squared column norm of H (else 1e-12 of m times it)."""
        m = self.memory
        cols = (torch.arange(m, device=H.device)[None] < j[:, None]).double()  # (b, m)
        Hm = H * cols[:, None, :]
        A = Hm.transpose(1, 2) @ Hm  # (b, m, m)
        scale = A.diagonal(dim1=1, dim2=2).sum(1).clamp_min(1e-300) / m
        if ridge is None:
            damp = 1e-12 * scale
        else:  # mu times the mean squared norm of the j columns in use
            damp = ridge.double() * scale * m / j.clamp_min(1).double()
        A = A + (damp + 1e-300)[:, None, None] * torch.eye(m, dtype=A.dtype, device=A.device)
        rhs = beta.double()[:, None] * Hm[:, 0, :]  # H^T (beta e1)
        y = torch.linalg.solve_ex(A, rhs[..., None])[0][..., 0] * cols  # (b, m)
        e1 = torch.zeros(H.shape[0], m + 1, dtype=H.dtype, device=H.device)
        e1[:, 0] = beta.double()
        est = (e1 - (Hm @ y[..., None])[..., 0]).norm(dim=1)
        return y, est.float()
