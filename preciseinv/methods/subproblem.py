"""One (batch, timestep) subproblem: a LightningModule whose only parameter is eps*_t.

    minimise_eps  L_t(eps) = mean ||mu(sqrt(a_t) x0 + sqrt(1 - a_t) eps) - x*_{t-1}||^2     (per sample)

The solver updates ``eps`` in place; ``training_step`` returns the per-sample residual of the rows it is given,
``configure_optimizers`` the solver's update rule bound to this subproblem. The frozen network is reached through
the sampler's ``denoise`` and a plain callable, never registered as a submodule: state dicts, DDP and checkpoints
see eps* alone. No Trainer drives it: the custom loop in ``preciseinv.solvers.loop`` does, batched.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from lightning.pytorch import LightningModule

from preciseinv.models.base import select
from preciseinv.samplers import Denoiser, Sampler


class NoiseSubproblem(LightningModule):
    def __init__(self, sampler: Sampler, denoiser: Denoiser, k: int, x0: torch.Tensor,
                 target: torch.Tensor, eps_init: torch.Tensor, cond: Any = None, noise: torch.Tensor | None = None,
                 learn_noise: bool = False, solver: Callable | None = None):
        super().__init__()
        self.learn_noise = learn_noise and noise is not None
        init = torch.cat([eps_init, noise], dim=1) if self.learn_noise else eps_init
        # (B, C, h, w) eps*_t, or (B, 2C, h, w) [eps*_t | z*_t] when the step noise is learned jointly
        self.eps = torch.nn.Parameter(init.detach().float().clone())
        self.noise = None if noise is None or self.learn_noise else noise.detach().float()  # a fixed injected z
        self.register_buffer("x0", x0.detach().float(), persistent=False)  # (B, C, h, w)
        self.register_buffer("target", target.detach().float(), persistent=False)  # (B, C, h, w) x*_{t-1}
        self.sampler, self.denoiser, self.k, self.cond, self.solver = sampler, denoiser, k, cond, solver
        self._cond_rows: list = []  # [(idx, cond[idx])] of the working set's current parts

    @property
    def batch_size(self) -> int:
        return self.eps.shape[0]

    @property
    def static_shapes(self) -> bool:
        """Whether the denoiser records CUDA graphs (one per shape): the solver loop then pads to bucket sizes."""
        owner = getattr(self.denoiser, "__self__", self.denoiser)  # a bound ``DiffusionModel.predict``, usually
        return bool(getattr(owner, "static_shapes", False))

    @property
    def timestep(self):
        return self.sampler.schedule.timesteps[self.k]

    # --- Lightning's two hooks -----------------------------------------------------------------
    def configure_optimizers(self):
        """The solver's update rule, bound to this subproblem (a ``functools.partial`` from the ``solver`` config)."""
        return self.solver(self)

    def training_step(self, idx: torch.Tensor, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        """{"loss": (b,) mean squared residual, "r": (b, C, h, w) mu(x_t) - x*_{t-1}} of the rows ``idx`` at the
        current eps* (differentiable w.r.t. ``self.eps`` where grad is enabled)."""
        r = self.residual(self.eps[idx], idx)
        return {"loss": r.pow(2).flatten(1).mean(1), "r": r}

    # --- the math --------------------------------------------------------------------------------
    def split(self, param: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(eps*, z) of a parameter value: z is learned, fixed, or None for samplers that inject no noise."""
        param = self.eps if param is None else param
        if self.learn_noise:
            return param.chunk(2, dim=1)
        return param, self.noise

    def state(self, param: torch.Tensor | None = None, idx: torch.Tensor | None = None) -> torch.Tensor:
        """x*_t for a parameter value (default: the parameter) of the samples ``idx`` (default: all)."""
        eps = self.split(param)[0]
        x0 = self.x0 if idx is None else self.x0[idx]
        return self.sampler.state(x0, eps, self.k)

    def residual(self, param: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """mu(x_t) - x*_{t-1} (b, C, h, w) of the rows ``idx`` at the parameter value ``param`` (b, P, h, w)."""
        eps, z = self.split(param)
        z = z if z is None or self.learn_noise else z[idx]
        out = self.sampler.denoise(self.denoiser, self.state(param, idx), self.k, self._rows_cond(idx), z)
        return out - self.target[idx]

    def _rows_cond(self, idx: torch.Tensor):
        """cond[idx], gathered once per index tensor: the loop keeps its index tensors between syncs."""
        for rows, cond in self._cond_rows:
            if rows is idx:
                return cond
        self._cond_rows = self._cond_rows[-1:] + [(idx, select(self.cond, idx))]
        return self._cond_rows[-1][1]

    def forward(self, param: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared residual (b,) of the rows ``idx`` at ``param``."""
        return self.residual(param, idx).pow(2).flatten(1).mean(1)

    def newton_step(self, r: torch.Tensor) -> torch.Tensor:
        """The fixed-point correction (b, P, h, w) for a residual r (b, C, h, w).

        With the network's estimate held fixed, mu is affine in the parameter: d mu = g_eps d eps + g_z d z with
        g_eps = frozen_slope * state_gain and g_z = noise_gain (DDPM's learned step noise). The minimum-norm
        change that cancels r under that model is  -(g_eps, g_z) r / (g_eps^2 + g_z^2): the map
        p <- p + newton_step(r(p)) is at a fixed point exactly where mu(x*_t) = x*_{t-1}.
        """
        slope, gain, g_z = self.sampler.gains(self.k)
        g_eps = slope * gain
        if not self.learn_noise:
            return -r / g_eps
        d = g_eps * g_eps + g_z * g_z
        return torch.cat([-(g_eps / d) * r, -(g_z / d) * r], dim=1)
