"""What every inversion method returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from preciseinv.solvers.base import network_cost


@dataclass
class InversionResult:
    """x*_T for a batch, and per-step, per-sample statistics (index k = 0 is t_1, the least noisy step)."""

    latent: torch.Tensor  # (B, C, H, W) fp32, x*_T
    iters: list[torch.Tensor] = field(default_factory=list)  # T x (B,) gradient steps taken
    residual: list[torch.Tensor] = field(default_factory=list)  # T x (B,) final mean squared residual
    converged: list[torch.Tensor] = field(default_factory=list)  # T x (B,) residual < eta
    nfe_forward: torch.Tensor | None = None  # (B,) network forward calls during inversion
    nfe_backward: torch.Tensor | None = None  # (B,) network backward calls during inversion

    phase: list[list[str | None]] = field(default_factory=list)  # T x B: the solver phase that converged it
    noises: list[torch.Tensor | None] = field(default_factory=list)  # T x (B, C, h, w) z injected from step k
    retried_fp32: torch.Tensor | None = None  # (B,) bool: redone in fp32 after a non-finite half-precision run
    companion: torch.Tensor | None = None  # (B, C, h, w) the second state coupled samplers reconstruct from (EDICT's
    #                                        y_T, BDIA's and BELM's x_{T-1}); stored beside x*_T as ``companion``
    unclipped: bool = False  # the sampler clips x0_hat and the method ran its step without that clipping
    x0: torch.Tensor | None = None  # (B, C, h, w) the clean state inverted from (the engine sets it)
    states: list[torch.Tensor] = field(default_factory=list)  # T - 1 x (B, C, h, w): x*_1 .. x*_{T-1} (preciseinv)
    init: list[list[str]] = field(default_factory=list)  # T x B: the start each step's solver took (preciseinv)
    retry: str | None = None  # the solver that solved again what the first left above eta (preciseinv retry=)

    def add_step(self, stats) -> None:
        """Append one step's ``SolverStats``."""
        self.iters.append(stats.iters)
        self.residual.append(stats.residual)
        self.converged.append(stats.converged)
        self.phase.append(stats.phases())

    def finite(self) -> torch.Tensor:
        """(B,) True where x*_T and every step's residual are finite."""
        ok = torch.isfinite(self.latent).flatten(1).all(1)
        for residual in self.residual:
            ok &= torch.isfinite(residual)
        return ok

    def replace(self, idx: torch.Tensor, other: "InversionResult") -> None:
        """Overwrite the samples ``idx`` with ``other``'s (same steps, len(idx) samples)."""
        self.latent[idx] = other.latent
        for mine, theirs in ((self.iters, other.iters), (self.residual, other.residual),
                             (self.converged, other.converged)):
            for k in range(len(mine)):
                mine[k][idx] = theirs[k]
        for mine, theirs in ((self.phase, other.phase), (self.init, other.init)):  # per step, lists of B names
            for k in range(len(mine)):
                for j, i in enumerate(idx.tolist()):
                    mine[k][i] = theirs[k][j]
        if self.companion is not None:
            self.companion[idx] = other.companion
        for mine, theirs in zip(self.noises, other.noises):
            if mine is not None:
                mine[idx] = theirs
        for mine, theirs in zip(self.states, other.states):
            mine[idx] = theirs
        self.nfe_forward[idx] += other.nfe_forward  # the failed attempt's work was spent too
        self.nfe_backward[idx] += other.nfe_backward

    def per_sample(self) -> list[dict]:
        """One plain dict per sample: lists over steps, ready for JSON."""
        it = torch.stack(self.iters, 1).tolist()  # (B, T)
        res = torch.stack(self.residual, 1).tolist()
        conv = torch.stack(self.converged, 1).tolist()
        f, b = self.nfe_forward.tolist(), self.nfe_backward.tolist()
        retried = self.retried_fp32.tolist() if self.retried_fp32 is not None else [False] * len(f)
        phase = [[p[i] for p in self.phase] if self.phase else [None] * len(it[i]) for i in range(len(f))]
        init = [{"init": [starts[i] for starts in self.init]} if self.init else {} for i in range(len(f))]
        return [{"iters": it[i], "residual": res[i], "converged": conv[i], "phase": phase[i], "nfe_forward": f[i],
                 "nfe_backward": b[i], "cost": network_cost(f[i], b[i]), "retried_fp32": retried[i],
                 "unclipped": self.unclipped, **init[i], **({"retry": self.retry} if self.retry else {})}
                for i in range(len(f))]


def record_step(result: InversionResult, sampler, denoiser, x: torch.Tensor, x_prev: torch.Tensor, x0: torch.Tensor,
                k: int, cond, eta: float) -> None:
    """For methods that take one inversion update per step (DDIM inversion, ReNoise): the noise the step from k
    injects (lcm/ddpm: the state below's own), and the residual ||mu(x) - x_prev||^2 that the step leaves, measured
    for the report (a diagnostic network call, not counted as the method's work)."""
    B = x.shape[0]
    z = sampler.noise(x0, x_prev, k - 1) if sampler.injects_noise and k > 0 else None
    result.noises.append(z)
    residual = (sampler.denoise(denoiser, x, k, cond, z) - x_prev).pow(2).flatten(1).mean(1)  # (B,)
    result.iters.append(torch.zeros(B, dtype=torch.long, device=x.device))
    result.residual.append(residual)
    result.converged.append(residual < eta)
    result.phase.append(["init" if c else None for c in (residual < eta).tolist()])


def exact_refusal(method: str, sampler: str):
    """The one line that refuses a coupled exact method on a sampler that injects noise."""
    from preciseinv.errors import PreciseInvError

    return PreciseInvError(f"method={method} needs a deterministic sampler (ddim or euler): sampler={sampler} "
                           "injects noise at every step, which an exact inversion cannot undo")


def exact_sampler(sampler, method: str):
    """(the sampler a coupled exact method runs, whether it drops the sampler's x0 clipping): deterministic, and
    unclipped as the methods are defined: EDICT undoes each affine step exactly (a clipped x0_hat cannot be undone),
    BDIA's and BELM's relations are linear in the network's noise estimate."""
    if sampler.injects_noise:
        raise exact_refusal(method, sampler.name)
    unclipped = sampler.unclipped()
    return unclipped, unclipped is not sampler


def estimate(sampler, denoiser, x: torch.Tensor, k: int, cond) -> torch.Tensor:
    """The noise estimate (velocity for flow) of the network at state ``x`` of step k."""
    return sampler.noise_estimate(denoiser(x, sampler.schedule.timesteps[k], cond), x, k)
