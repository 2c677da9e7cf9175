"""The one batched solver loop: every solver is an update rule plugged into it.

    rule = problem.configure_optimizers()
    for it = 0 .. max_iters:
        r, loss = problem.training_step(working set)          # one network forward (+ graph where a gradient is due)
        best iterate, converged (loss < eta), phase that converged it
        it == max_iters: stop (the last evaluation is forward-only, so the recorded residual is the returned one's)
        every sync_every iterations (the only host syncs): stop if nobody runs; drop finished samples from the
            working set and put the samples that need a gradient last; report to the callback
        grad = d loss / d eps for those samples (one backward)
        eps[working set] <- rule.step(...)                   # in place: the subproblem's parameter is the state

A sample stops on its own as soon as its residual is below eta; between syncs it rides along frozen (its network
work is counted, as it is spent). With ``buckets`` (on by default when the denoiser records CUDA graphs:
``problem.static_shapes``) each part of the working set is padded with finished rows up to one of a few sizes, so
the recorded graphs are reused (``buckets.py``); the padding's network work is not counted as any sample's. A
non-finite residual puts the sample back on its best iterate when the rule can restart (the hybrid switches
method), else stops it unconverged. ``LoopHooks`` carry what the caller runs at sync points (a stop check, telemetry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from preciseinv.errors import PreciseInvError
from preciseinv.solvers.base import SolverStats, rows
from preciseinv.solvers.buckets import pad_to_buckets


def check_stop(eta: float | None = None, max_iters: int | None = None, retry_iters: int | None = None) -> None:
    """The stopping rule's values (None: not given): eta > 0, max_iters >= 0 (a retry's cap >= 1), one line each,
    named as the config spells them."""
    if eta is not None and not eta > 0:
        raise PreciseInvError(f"method.eta must be > 0, got {eta}; the paper uses 1e-2, 1e-3 or 1e-5")
    for key, cap, low in (("max_iters", max_iters, 0), ("retry_iters", retry_iters, 1)):  # a retry of 0: none
        if cap is not None and not cap >= low:
            raise PreciseInvError(f"method.{key} must be >= {low}, got {cap}")


@dataclass
class LoopHooks:
    """What the layers above hand the loop (k-diffusion style, as arguments, never patched in): ``stop()`` is
    called at every sync point and may raise to end the solve there (the Lightning layer's check for a SIGTERM);
    each ``on_sync(event)`` gets a dict of the loop's state there (``SolverLoop._event``: telemetry)."""

    stop: Callable[[], None] | None = None
    on_sync: list[Callable[[dict], None]] = field(default_factory=list)


class SolverLoop:
    def __init__(self, eta: float = 1e-3, max_iters: int = 200, sync_every: int = 8, buckets: bool | None = None):
        check_stop(eta, max_iters)
        self.eta, self.max_iters, self.sync_every = eta, max_iters, max(1, sync_every)
        self.buckets = buckets  # None: pad to bucket sizes when the problem's network records CUDA graphs

    def run(self, problem, hooks: LoopHooks | None = None) -> SolverStats:
        """Solve ``problem`` (a ``NoiseSubproblem``) in place: on return ``problem.eps`` holds eps* of every sample."""
        self._hooks = hooks or LoopHooks()
        rule = problem.configure_optimizers()
        rule.eta, rule.max_iters = self.eta, self.max_iters
        param = problem.eps  # (B, P, h, w), updated in place
        B, device = param.shape[0], param.device
        stats = SolverStats.empty(B, device, ("init",) + tuple(rule.phase_names()))
        idx = torch.arange(B, device=device)  # working set (b,)
        p = param.detach().clone()  # (b, P, h, w) the working set's parameters, mirrored into ``param``
        best_p, best = p.clone(), torch.full((B,), float("inf"), device=device)  # (b, ...), (b,)
        live = torch.ones(B, dtype=torch.bool, device=device)  # (b,)
        rule.begin(p)
        self._pad = self.buckets if self.buckets is not None else bool(getattr(problem, "static_shapes", False))
        order = self._partition(rule, live)  # the working set's last n_grad rows get a gradient (redone at syncs)
        keep, n_grad, wants = order  # wants (b,): the rows whose gradient is used (padding rides along without)
        counted = torch.ones(B, dtype=torch.long, device=device)  # (b,) 0 for padding rows (their work is nobody's)
        idx, p, best_p, best, live = idx[keep], p[keep], best_p[keep], best[keep], live[keep]
        rule.select(keep)
        for it in range(self.max_iters + 1):
            if self._pad:  # CUDA graphs (reduce-overhead) may reuse the last iteration's output buffers
                torch.compiler.cudagraph_mark_step_begin()
            if it == 0 or order is not None:  # index tensors are kept between syncs (the subproblem caches by them)
                parts = (idx[: idx.numel() - n_grad], idx[idx.numel() - n_grad:])
            r, loss, pending = self._evaluate(problem, parts, it < self.max_iters)
            stats.nfe_forward[idx] += counted
            better = live & (loss < best)  # NaN compares False: a non-finite iterate is never the best
            best = torch.where(better, loss, best)
            best_p = torch.where(rows(better, p), p, best_p)
            done = live & (loss < self.eta)
            stats.converged[idx] |= done
            phase = rule.phase() + 1 if it else torch.zeros_like(idx)  # 0: the initialisation already met eta
            stats.phase[idx] = torch.where(done, phase, stats.phase[idx])
            stats.residual[idx] = torch.where(live, best if rule.returns_best else loss, stats.residual[idx])
            bad = live & ~loss.isfinite()
            live = live & ~done
            if rule.restarts:  # back to the best iterate (the rule sees the non-finite loss and changes course)
                p = torch.where(rows(bad, p), best_p, p)
                live = live & ~(bad & ~best.isfinite())  # never finite, nothing to go back to: stop
            else:
                live = live & ~bad
            if it == self.max_iters:
                break
            order = None
            if it % self.sync_every == 0:
                order = self._sync(rule, live, loss, stats, it, problem)
                if order is None:
                    break
            grad = None
            if pending is not None:
                n = p.shape[0]
                grad = torch.cat([torch.zeros_like(p[: n - n_grad]), pending()])
                grad = torch.where(rows(wants, grad), grad, 0.0)  # a row carried in the gradient part needs none
                stats.nfe_backward[idx[n - n_grad:]] += wants[n - n_grad:].long()
            p = torch.where(rows(live, p), rule.step(p, r, loss, grad, live, it), p)
            stats.iters[idx] += live.long()
            self._commit(param, idx, p)
            if order is not None:  # compact: finished samples leave the working set, gradient samples go last
                keep, n_grad, wants = order
                if rule.returns_best:
                    self._commit(param, idx, torch.where(rows(live, p), p, best_p))
                counted = live[keep].long()  # rows kept though finished are padding
                idx, p, best_p, best, live = idx[keep], p[keep], best_p[keep], best[keep], live[keep]
                rule.select(keep)
        self._commit(param, idx, best_p if rule.returns_best else p)
        return stats

    # --- pieces ------------------------------------------------------------------------------------
    @staticmethod
    def _commit(param: torch.nn.Parameter, idx: torch.Tensor, p: torch.Tensor) -> None:
        with torch.no_grad():
            param.index_copy_(0, idx, p)

    def _evaluate(self, problem, parts: tuple[torch.Tensor, torch.Tensor], grad_allowed: bool):
        """(r (b, C, h, w), loss (b,), pending) of the working set (forward-only rows, gradient rows) at
        ``problem.eps``; ``pending()`` returns d loss / d eps of the gradient rows (one backward), or is None."""
        fwd, grad_rows = (parts[0],), parts[1]
        if not grad_allowed:  # the last evaluation is forward-only (two calls of bucket sizes when padding)
            fwd, grad_rows = (parts if self._pad else (torch.cat(parts),)), parts[1][:0]
        pieces, pending = [], None
        for rows_ in fwd:
            if rows_.numel():
                with torch.no_grad():
                    pieces.append(problem.training_step(rows_))
        if grad_rows.numel():
            with torch.enable_grad():
                out = problem.training_step(grad_rows)
            pieces.append({k: v.detach() for k, v in out.items()})

            def backward():
                (g,) = torch.autograd.grad(out["loss"].float().sum(), problem.eps)
                return g[grad_rows]  # (n_grad, P, h, w)

            pending = backward
        r = torch.cat([o["r"] for o in pieces]) if len(pieces) > 1 else pieces[0]["r"]
        loss = torch.cat([o["loss"] for o in pieces]) if len(pieces) > 1 else pieces[0]["loss"]
        return r, loss.detach().float(), pending

    def _sync(self, rule, live, loss, stats, it, problem):
        """The host reads the live and gradient masks once: None to stop now, else (rows to keep, forward-only
        samples first and gradient samples last; how many need a gradient). The hooks run here: ``stop`` may end
        the solve (the batch in flight is dropped, nothing of it has been written), ``on_sync`` gets the event."""
        if self._hooks.stop is not None:
            self._hooks.stop()
        if self._hooks.on_sync:
            event = self._event(rule, live, loss, stats, it, problem)
            for hook in self._hooks.on_sync:
                hook(event)
        return self._partition(rule, live)

    def _partition(self, rule, live):
        """None if no sample runs, else (the rows to keep, forward-only samples first; how many rows get a
        gradient; (b,) which rows use theirs). With padding, each part is brought to a bucket size (finished rows
        fill it, and forward-only rows may ride in the gradient part)."""
        flags = torch.stack([live, rule.needs_grad(live) & live]).cpu()  # the one device-to-host copy
        live_h, need_h = flags[0], flags[1]
        if not bool(live_h.any()):
            return None
        fwd, grad = (live_h & ~need_h).nonzero().squeeze(1), need_h.nonzero().squeeze(1)
        if self._pad:
            fwd, grad = pad_to_buckets(fwd, grad, (~live_h).nonzero().squeeze(1))
        keep = torch.cat([fwd, grad])
        return keep.to(live.device), grad.numel(), need_h[keep].to(live.device)

    def _event(self, rule, live, loss, stats, it, problem) -> dict:
        """Telemetry: residual median / max over the running samples, fraction converged, phases, switches."""
        running = loss[live]
        names = rule.phase_names()
        counts = torch.bincount(rule.phase()[live], minlength=len(names)).tolist() if running.numel() else [0] * len(names)
        return {
            "k": problem.k, "timestep": problem.timestep, "iteration": it, "batch": int(stats.converged.numel()),
            "live": int(running.numel()), "converged_fraction": float(stats.converged.float().mean()),
            "residual_median": float(running.median()) if running.numel() else None,
            "residual_max": float(running.max()) if running.numel() else None,
            "phases": dict(zip(names, counts)), "switched": rule.switched(),
        }
