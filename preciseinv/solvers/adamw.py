"""AdamW over a batch of independent problems, with per-sample early stopping.

A sample whose residual falls below eta is frozen: its eps*, both Adam moments and its step count stop changing.
The host reads the converged mask only every ``sync_every`` iterations, starting with the first evaluation (no
synchronisation per iteration); at each read the working set shrinks to the samples still running, so a finished
sample costs no more network work, and a step whose initialisation already meets eta costs no gradient at all.
The update is torch.optim.AdamW's, written out so that it can be masked per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

# residual(eps (b, ...), idx (b,)) -> per-sample mean squared residual (b,), differentiable w.r.t. eps
Residual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SolverStats:
    """Per-sample outcome of one subproblem (all tensors (B,))."""

    iters: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor
    nfe_forward: torch.Tensor
    nfe_backward: torch.Tensor


class AdamWSolver:
    """Minimise each sample's residual until it is below ``eta`` or ``max_iters`` updates were made."""

    def __init__(self, lr: float = 0.1, eta: float = 1e-3, max_iters: int = 200, betas=(0.9, 0.999),
                 weight_decay: float = 0.01, eps: float = 1e-8, sync_every: int = 8):
        if eta <= 0:
            from preciseinv.errors import PreciseInvError

            raise PreciseInvError(f"method.eta must be > 0, got {eta}; the paper uses 1e-2, 1e-3 or 1e-5")
        self.lr, self.eta, self.max_iters = lr, eta, max_iters
        self.beta1, self.beta2 = betas
        self.weight_decay, self.adam_eps, self.sync_every = weight_decay, eps, max(1, sync_every)

    def solve(self, residual: Residual, eps0: torch.Tensor) -> tuple[torch.Tensor, SolverStats]:
        """Returns (eps*, stats); ``eps0`` (B, ...) is the initialisation, kept in fp32 with the moments."""
        device, B = eps0.device, eps0.shape[0]
        eps_all = eps0.detach().float().clone()  # (B, ...)
        stats = SolverStats(
            iters=torch.zeros(B, dtype=torch.long, device=device),
            residual=torch.full((B,), float("inf"), device=device),
            converged=torch.zeros(B, dtype=torch.bool, device=device),
            nfe_forward=torch.zeros(B, dtype=torch.long, device=device),
            nfe_backward=torch.zeros(B, dtype=torch.long, device=device),
        )
        idx = torch.arange(B, device=device)  # working set (b,)
        eps, m, v = eps_all.clone(), torch.zeros_like(eps_all), torch.zeros_like(eps_all)  # (b, ...)
        live = torch.ones(B, dtype=torch.bool, device=device)  # (b,) still optimising
        for it in range(self.max_iters + 1):
            eps = eps.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = residual(eps, idx).float()  # (b,)
            stats.nfe_forward[idx] += 1
            value = loss.detach()
            stats.residual[idx] = torch.where(live, value, stats.residual[idx])
            done = live & (value < self.eta)
            stats.converged[idx] |= done
            live = live & ~done & value.isfinite()
            if it == self.max_iters:
                break
            keep = None
            if it % self.sync_every == 0:  # the only host sync: stop early, or shrink the working set below
                keep = live.nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
            (grad,) = torch.autograd.grad(loss.sum(), eps)
            stats.nfe_backward[idx] += 1
            eps, m, v = self._update(eps.detach(), grad, m, v, it + 1, live)
            stats.iters[idx] += live.long()
            if keep is not None and keep.numel() < idx.numel():
                eps_all[idx] = eps
                idx, eps, m, v, live = idx[keep], eps[keep], m[keep], v[keep], live[keep]
        eps_all[idx] = eps.detach()
        return eps_all, stats

    def _update(self, p, g, m, v, step: int, live):
        """One AdamW step (torch.optim.AdamW's arithmetic), applied only where ``live``."""
        mask = live.view(-1, *([1] * (p.dim() - 1)))  # (b, 1, 1, 1)
        m_new = self.beta1 * m + (1 - self.beta1) * g
        v_new = self.beta2 * v + (1 - self.beta2) * g * g
        m_hat = m_new / (1 - self.beta1 ** step)
        v_hat = v_new / (1 - self.beta2 ** step)
        p_new = p * (1 - self.lr * self.weight_decay) - self.lr * m_hat / (v_hat.sqrt() + self.adam_eps)
        return torch.where(mask, p_new, p), torch.where(mask, m_new, m), torch.where(mask, v_new, v)
