"""PreciseInv (NeurIPS 2025): progressive inversion, one learned eps*_t per step.

    x*_0 = x0
    for t = t_1 .. t_T:
        eps*_t <- DDIM-inversion step from x*_{t-1}              (initialisation)
        minimise ||mu(x*_t) - x*_{t-1}||^2 over eps*_t, until below eta or max_iters      (the solver)
        x*_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps*_t
    return x*_T

The solver is pluggable (``solver=`` in the config): ``adamw`` is the paper's recipe, ``hybrid`` the default. So
is the start (``init=``): ``ddim`` is the paper's one DDIM-inversion step, ``learned`` a predictor trained on
finished inversions (``preciseinv.inits``). The result keeps x*_1 .. x*_{T-1} and which start each step took.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import torch

from preciseinv.inits import DDIMStart
from preciseinv.methods.base import InversionResult
from preciseinv.methods.subproblem import NoiseSubproblem
from preciseinv.samplers import Denoiser, Sampler
from preciseinv.solvers import Hybrid, LoopHooks, SolverLoop
from preciseinv.solvers.base import uses_network_gradient


class PreciseInv:
    name = "preciseinv"

    def __init__(self, eta: float = 1e-3, max_iters: int = 200, solver: Callable | None = None,
                 sync_every: int = 8, buckets: bool | None = None, init=None):
        self.eta, self.max_iters = eta, max_iters
        self.solver = solver or partial(Hybrid)  # solver(problem) -> the update rule bound to that subproblem
        self.init = init or DDIMStart()  # where each step's solver starts (preciseinv.inits)
        # buckets: pad the working set to a few sizes (None: when the denoiser records CUDA graphs; buckets.py)
        self.loop = SolverLoop(eta=eta, max_iters=max_iters, sync_every=sync_every, buckets=buckets)

    @property
    def network_gradients(self) -> bool:
        """Whether inverting may differentiate the network (the solver's gradient phases): what bounds memory."""
        return uses_network_gradient(self.solver)

    def describe(self) -> dict:
        return {"method": self.name, "eta": self.eta, "max_iters": self.max_iters, "solver": describe_solver(self.solver)}

    def invert(self, denoiser: Denoiser, sampler: Sampler, x0: torch.Tensor, cond: Any = None,
               hooks: LoopHooks | None = None) -> InversionResult:
        x0 = x0.detach().float()  # (B, C, H, W)
        result = InversionResult(latent=x0)
        nfe_f = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        nfe_b = torch.zeros_like(nfe_f)
        x_prev, eps_prev = x0, None
        injects = sampler.injects_noise
        for k in range(sampler.num_steps):
            noise = eps_prev if injects and k > 0 else None  # the z that lands on state k-1: its own eps*
            start = self.init(denoiser, sampler, x0, x_prev, k, cond, noise)  # x (B, C, H, W), its network calls
            problem, stats = self.solve(denoiser, sampler, x0, x_prev, k, start.x, cond, noise, hooks)
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
              hooks: LoopHooks | None = None):
        """Step k's subproblem, mu(x*_k) = x*_{k-1} (``x_prev``, (B, C, H, W)), solved from the state ``x_start``
        (B, C, H, W): (the subproblem, its eps in place; the per-sample ``SolverStats``)."""
        problem = NoiseSubproblem(sampler, denoiser, k, x0, x_prev, sampler.noise(x0, x_start, k), cond,
                                  noise=noise, learn_noise=sampler.learn_noise, solver=self.solver)
        return problem, self.loop.run(problem, hooks)


def describe_solver(solver) -> dict:
    """{"name": ..., **keyword arguments} of a solver partial, for latent files and run records."""
    func = getattr(solver, "func", solver)
    plain = lambda v: v if isinstance(v, (str, int, float, bool, type(None))) else list(v)  # noqa: E731  (ListConfig)
    return {"name": getattr(func, "name", getattr(func, "__name__", str(func))),
            **{k: plain(v) for k, v in getattr(solver, "keywords", {}).items()}}
