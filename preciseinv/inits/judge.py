"""Which steps a learned start is kept for: judged by the solves it saves on held-out images, not by its residual.

A lower starting residual is not a shorter solve (docs/learned_init.md: on the mini DDPM the residual-trained start
leaves a 4x lower residual and lengthens the solves). So after training, ``learn_init`` solves each learned step of
the validation pairs twice with the runs' own method (eta, cap, solver, retry), once from the DDIM start and once
from the learned start behind its safeguard, and keeps the prediction for step k only where

    mean saving per pair - 2 standard errors of the paired savings > 0   and   converged(learned) >= converged(DDIM)

each pair's cost counting the start's own network calls (1 for the DDIM start, 3 for the learned one) plus its
solve's (``network_cost``). The margin keeps a saving only when it is clear of the pair-to-pair spread: on 10
held-out images a 2 % saving is noise (on mini-clip at T = 10 it did not hold on other images). A step not kept
takes the DDIM start at its one call, so ``init=learned`` costs what ``init=ddim`` costs there.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from preciseinv.inits.base import Start, injected_noise
from preciseinv.methods.preciseinv import chain_below
from preciseinv.solvers.base import network_cost


def _outcome(method, denoiser, sampler, k: int, start: Start, x0, x_prev, cond, noise) -> tuple[torch.Tensor, ...]:
    """(cost (b,), converged (b,)) of step k solved from ``start``. Under a retry solver the two solutions of a
    sample are compared as a run compares them, by where they land through the steps under k, where those steps
    need no noise found by the run (a sampler that injects noise: by the lower residual, the pairs keep no noises)."""
    below = None if sampler.injects_noise else partial(chain_below, denoiser, sampler, cond, [None] * k, k)
    _, stats = method.solve(denoiser, sampler, x0, x_prev, k, start.x, cond, noise, None, below)
    return start.calls.cpu() + network_cost(stats.nfe_forward, stats.nfe_backward).cpu(), stats.converged.cpu()


def paired_saving(ddim: torch.Tensor, learned: torch.Tensor) -> tuple[float, float]:
    """(mean, lower bound) of the cost the learned start saves per pair, from the paired costs (n,) of the same
    pairs' solves: the bound is the mean less two standard errors of the paired differences, so a step is kept only
    when the saving is clear of the pair-to-pair spread (with one pair, never)."""
    d = (ddim - learned).double()  # (n,) > 0 where the learned start was cheaper
    if len(d) < 2:
        return float(d.mean()), float("-inf")
    return float(d.mean()), float(d.mean() - 2 * d.std() / len(d) ** 0.5)


def judge_steps(method, engine, start: Callable[..., Start], steps, pairs: dict, rows: torch.Tensor,
                batch_size: int = 64) -> dict[int, dict]:
    """Per step k of ``steps``: the held-out solves of ``pairs`` (``datamodules.inversions.build_pairs``; ``rows``:
    every pair of the validation images, those the DDIM start solves included) from the DDIM start and from
    ``start``, ``{"pairs", "ddim": {"cost", "converged"}, "learned": {...}, "kept"}`` (mean cost per pair in
    forward-call units, converged fraction). A step without held-out pairs is not kept (``{"pairs": 0, "kept":
    False}``)."""
    sampler, denoiser, device = engine.sampler, engine.model.predict, engine.model.device
    out = {}
    for k in sorted(steps):
        idx = rows[pairs["k"][rows] == k]  # (n,) this step's held-out pairs
        if not len(idx):
            out[k] = {"pairs": 0, "kept": False}
            continue
        tally = {"ddim": ([], []), "learned": ([], [])}
        for lo in range(0, len(idx), batch_size):
            part = idx[lo:lo + batch_size]
            x0, x_prev = pairs["x0"][part].to(device), pairs["x_prev"][part].to(device)  # (b, C, h, w)
            cond = engine.condition([pairs["prompts"][int(i)] for i in pairs["image"][part]], len(part))
            noise = injected_noise(sampler, x0, x_prev, k)  # (b, C, h, w) lcm, ddpm, as invert gives it; else None
            x_ddim = sampler.state(x0, pairs["eps_ddim"][part].to(device), k)  # (b, C, h, w) as cached
            ddim = Start(x_ddim, torch.ones(len(part), dtype=torch.long), ["ddim"] * len(part))
            learned = start(denoiser, sampler, x0, x_prev, k, cond, noise)
            for name, begin in (("ddim", ddim), ("learned", learned)):
                cost, converged = _outcome(method, denoiser, sampler, k, begin, x0, x_prev, cond, noise)
                tally[name][0].append(cost.float())
                tally[name][1].append(converged.float())
        costs = {name: torch.cat(c) for name, (c, _) in tally.items()}  # (n,) each, pair by pair
        converged = {name: int(torch.cat(v).sum()) for name, (_, v) in tally.items()}  # counts: compared exactly
        saved, bound = paired_saving(costs["ddim"], costs["learned"])
        kept = bound > 0 and converged["learned"] >= converged["ddim"]
        out[k] = {"pairs": len(idx), **{name: {"cost": round(float(costs[name].mean()), 2),
                                               "converged": round(converged[name] / len(idx), 4)} for name in tally},
                  "saved": round(saved, 2), "saved_low": round(bound, 2), "kept": kept}
    return out
