"""PreciseInv (NeurIPS 2025): progressive inversion, one learned eps*_t per step.

    x*_0 = x0
    for t = t_1 .. t_T:
        eps*_t <- DDIM-inversion step from x*_{t-1}              (initialisation)
        minimise ||mu(x*_t) - x*_{t-1}||^2 over eps*_t, until below eta or max_iters      (the solver)
        x*_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps*_t
    return x*_T

The solver is pluggable (``solver=`` in the config): ``adamw`` is the paper's recipe, ``hybrid`` the default. So
is the start (``init=``): ``ddim`` is the paper's one DDIM-inversion step, ``learned`` a predictor trained on
finished inversions (``preciseinv.inits``). With a ``retry`` solver (``retry=`` in the config), the samples a step
leaves above eta at the cap are solved once more, from the same start, by that solver under its own cap
(``retry_iters``); each keeps the solution whose output lands nearer x0 through the steps under it, and
both solves' network calls count. The result keeps x*_1 .. x*_{T-1} and which start each step took.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import torch

from preciseinv.inits import DDIMStart
from preciseinv.methods.base import InversionResult
from preciseinv.methods.subproblem import NoiseSubproblem
from preciseinv.models.base import select
from preciseinv.samplers import Denoiser, Sampler
from preciseinv.solvers import Hybrid, LoopHooks, SolverLoop
from preciseinv.solvers.base import SolverStats, rows, uses_network_gradient
from preciseinv.solvers.loop import check_stop


class PreciseInv:
    name = "preciseinv"

    def __init__(self, eta: float = 1e-3, max_iters: int = 200, solver: Callable | None = None,
                 sync_every: int = 8, buckets: bool | None = None, init=None, retry: Callable | None = None,
                 retry_iters: int | None = None):
        self.eta, self.max_iters = eta, max_iters
        self.solver = solver or partial(Hybrid)  # solver(problem) -> the update rule bound to that subproblem
        self.init = init or DDIMStart()  # where each step's solver starts (preciseinv.inits)
        # buckets: pad the working set to a few sizes (None: when the denoiser records CUDA graphs; buckets.py)
        self.loop = SolverLoop(eta=eta, max_iters=max_iters, sync_every=sync_every, buckets=buckets)
        # a second solver for the samples the first leaves above eta, from their start, under its own cap
        check_stop(retry_iters=retry_iters)
        self.retry = retry
        self.retry_iters = max_iters if retry_iters is None else retry_iters
        self.retry_loop = SolverLoop(eta=eta, max_iters=self.retry_iters, sync_every=sync_every, buckets=buckets)

    @property
    def retry_name(self) -> str | None:
        """The retry solver's name (``spectral``), recorded per sample; None without one."""
        return None if self.retry is None else describe_solver(self.retry)["name"]

    @property
    def network_gradients(self) -> bool:
        """Whether inverting may differentiate the network (the solver's gradient phases): what bounds memory."""
        return uses_network_gradient(self.solver) or (self.retry is not None and uses_network_gradient(self.retry))

    def describe(self) -> dict:
        out = {"method": self.name, "eta": self.eta, "max_iters": self.max_iters,
               "solver": describe_solver(self.solver)}
        if self.retry is not None:
            out.update(retry=describe_solver(self.retry), retry_iters=self.retry_iters)
        return out

    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks: LoopHooks | None = None) -> InversionResult:
        x0 = x0.detach().float()  # (B, C, H, W)
        result = InversionResult(latent=x0, retry=self.retry_name)
        nfe_f = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        nfe_b = torch.zeros_like(nfe_f)
        x_prev, eps_prev = x0, None
        injects = sampler.injects_noise
        for k in range(sampler.num_steps):
            noise = eps_prev if injects and k > 0 else None  # the z that lands on state k-1: its own eps*
            start = self.init(denoiser, sampler, x0, x_prev, k, cond, noise)  # x (B, C, H, W), its network calls
            below = partial(chain_below, denoiser, sampler, cond, result.noises, k)  # x*_{k-1} -> the output
            problem, stats = self.solve(denoiser, sampler, x0, x_prev, k, start.x, cond, noise, hooks, below)
            eps_prev, z = problem.split()
            eps_prev = eps_prev.detach()
            result.noises.append(None if z is None else z.detach().clone())
            with torch.no_grad():
                x_prev = problem.state()
            if k < sampler.num_steps - 1:
                result.states.append(x_prev)  # x*_{k+1}: with x0, what a predictor of the starts learns from
            result.add_step(stats)
            result.init.append(start.taken)
            nfe_f += stats.nfe_forward + start.calls  # + the start's own network calls
            nfe_b += stats.nfe_backward
        result.latent, result.nfe_forward, result.nfe_backward = x_prev, nfe_f, nfe_b
        return result

    def solve(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, x_prev: torch.Tensor, k: int,
              x_start: torch.Tensor, cond: Any = None, noise: torch.Tensor | None = None,
              hooks: LoopHooks | None = None, below: Callable | None = None):
        """Step k's subproblem, mu(x*_k) = x*_{k-1} (``x_prev``, (B, C, H, W)), solved from the state ``x_start``
        (B, C, H, W): (the subproblem, its eps in place; the per-sample ``SolverStats``). With a retry solver, the
        samples left above eta are solved again from the same start, and each keeps the better solution: the one
        whose output, carried by ``below(x, idx)`` (the sampler's steps under step k, for the rows ``idx``) down to
        the clean state, lands nearer x0 (None, or k = 0: the lower residual)."""
        problem = self._subproblem(self.solver, denoiser, sampler, k, x0, x_prev, x_start, cond, noise)
        stats = self.loop.run(problem, hooks)
        if self.retry is None:
            return problem, stats
        stats.phase_names += (f"retry:{self.retry_name}",)
        left = (~stats.converged).nonzero().squeeze(1)  # (n,) the samples left above eta: one host read per step
        if left.numel():
            again = self._subproblem(self.retry, denoiser, sampler, k, x0[left], x_prev[left], x_start[left],
                                     select(cond, left), select(noise, left))
            self._keep_better(problem, stats, left, again, self.retry_loop.run(again, hooks), below)
        return problem, stats

    @staticmethod
    def _subproblem(solver, denoiser, sampler, k, x0, x_prev, x_start, cond, noise) -> NoiseSubproblem:
        return NoiseSubproblem(sampler, denoiser, k, x0, x_prev, sampler.noise(x0, x_start, k), cond, noise=noise,
                               learn_noise=sampler.learn_noise, solver=solver)

    @staticmethod
    def _keep_better(problem: NoiseSubproblem, stats: SolverStats, left: torch.Tensor, again: NoiseSubproblem,
                     second: SolverStats, below: Callable | None = None) -> None:
        """Where the retry's solution of the rows ``left`` (n,) of ``problem`` is the better one, its eps*
        (``again``) replaces theirs; ``stats`` gains both solves' network calls and iterations, the kept residual,
        and the retry's phase (the last name) where it converged. Better: its output carried down to the clean
        state by ``below`` lands nearer x0 (a residual below eta at a high step can still land far from it, where
        the steps under it amplify its direction); without ``below``, or at the first step, the lower residual."""
        first, retried = stats.residual[left], second.residual  # (n,) each
        if below is not None and problem.k > 0:
            with torch.no_grad():
                own = torch.arange(left.numel(), device=left.device)  # the retry's rows are its own 0 .. n-1
                landed = [below(p.residual(eps, idx) + p.target[idx], left) for p, eps, idx in
                          ((problem, problem.eps[left], left), (again, again.eps, own))]
            first, retried = ((x - problem.x0[left]).pow(2).flatten(1).mean(1) for x in landed)
            stats.nfe_forward[left] += 2 * (problem.k + 1)  # mu_k and the k steps under it, for each solution
        # a non-finite first (a rule that returns its last iterate stopped on NaN) loses to any finite retry; a
        # non-finite retry never wins
        better = retried < first.nan_to_num(nan=float("inf"), posinf=float("inf"))  # (n,)
        with torch.no_grad():
            problem.eps[left] = torch.where(rows(better, again.eps), again.eps, problem.eps[left])
        stats.residual[left] = torch.where(better, second.residual, stats.residual[left])
        won = second.converged & better
        stats.converged[left] = won
        stats.phase[left] = torch.where(won, len(stats.phase_names) - 1, -1)
        for key in ("iters", "nfe_forward", "nfe_backward"):
            getattr(stats, key)[left] += getattr(second, key)


def chain_below(denoiser: Denoiser, sampler: Sampler, cond: Any, noises: list, k: int, x: torch.Tensor,
                idx: torch.Tensor) -> torch.Tensor:
    """The sampler's steps under step k (k - 1 .. 0) from the states x (n, C, H, W) of the rows ``idx``, replaying
    the step noises already found (``noises[j]``, (B, C, H, W) or None): where x lands, the output (n, C, H, W)."""
    for j in reversed(range(k)):
        z = noises[j][idx] if j > 0 and noises[j] is not None else None
        x = sampler.denoise(denoiser, x, j, select(cond, idx), z)
    return x


def describe_solver(solver) -> dict:
    """{"name": ..., **keyword arguments} of a solver partial, for latent files and run records."""
    func = getattr(solver, "func", solver)
    plain = lambda v: v if isinstance(v, (str, int, float, bool, type(None))) else list(v)  # noqa: E731  (ListConfig)
    return {"name": getattr(func, "name", getattr(func, "__name__", str(func))),
            **{k: plain(v) for k, v in getattr(solver, "keywords", {}).items()}}
