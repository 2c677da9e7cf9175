"""The LightningModule ``python -m preciseinv.learn_init`` trains: the start predictor g, judged as the safeguard
judges it, by the residual its start leaves.

    x         = x_ddim + sqrt(1 - a_k) g([x*_{k-1}, eps_ddim], t_k)     (preciseinv.inits.predictor)
    loss      = mean over pairs of ||mu(x) - x*_{k-1}||^2                (through the frozen diffusion model)

Why not regress eps*_k itself (the solution the run found): on the mini DDPM at T = 2 the solution is a chaotic
function of the image (a 1e-2 change of the solver's start lands it on another solution), so regression explains
under 7 % of its variance on held-out images and leaves the start's residual where the DDIM start's is, while the
residual loss lowers it about fourfold (docs/learned_init.md). Validation logs the held-out residual of the
predicted start (``val/residual``, what checkpointing and early stopping watch), the DDIM start's
(``val/residual_ddim``), the safeguarded one's (``val/start_residual``: per pair the lower) and the fraction where
the prediction is the lower (``val/learned_better``).

The diffusion model is loaded per rank in ``setup`` and held outside the registered children (as in
``preciseinv.module``): DDP never wraps it and checkpoints hold the predictor alone.
"""

from __future__ import annotations

from typing import Callable

import torch
from lightning.pytorch import LightningModule
from torch import nn

from preciseinv.inits.base import injected_noise
from preciseinv.inits.predictor import predicted_state


class StartPredictorModule(LightningModule):
    """``net``: the predictor (``configs/predictor``); ``scan``: the runs' inversions
    (``datamodules.inversions.scan_runs``), whose metadata rebuilds their model and sampler
    (``builder.file_config``); ``optimizer``: a partial taking the parameters."""

    def __init__(self, net: nn.Module, scan, optimizer: Callable):
        super().__init__()
        self.net, self.meta, self.optimizer = net, scan.meta, optimizer
        self.engine = None  # the diffusion model and sampler (not a child: never wrapped, never checkpointed)

    def setup(self, stage: str) -> None:
        if self.engine is None:
            from preciseinv.builder import build_engine, file_config, instantiate

            cfg = file_config(self.meta)
            self.engine = build_engine(cfg, instantiate(cfg.model).load("cpu"))

    def on_fit_start(self) -> None:
        self.engine.model.to(self.device)

    def predicted_residual(self, batch: dict) -> torch.Tensor:
        """(B,) ||mu(x) - x*_{k-1}||^2 of each pair's learned start x: the sampler runs one step at a time."""
        sampler, model = self.engine.sampler, self.engine.model
        r = torch.zeros(len(batch["k"]), device=batch["x0"].device)
        for step in batch["k"].unique().tolist():
            idx = (batch["k"] == step).nonzero().squeeze(1)
            x0, x_prev, eps_ddim = batch["x0"][idx], batch["x_prev"][idx], batch["eps_ddim"][idx]  # (b, C, h, w)
            x = predicted_state(self.net, sampler, step, x_prev, sampler.state(x0, eps_ddim, step), eps_ddim)
            cond = self.engine.condition([batch["prompt"][i] for i in idx.tolist()], len(idx))
            z = injected_noise(sampler, x0, x_prev, step)  # (b, C, h, w) lcm, ddpm; else None
            out = sampler.denoise(model.predict, x, step, cond, z)
            r = r.index_copy(0, idx, (out - x_prev).pow(2).flatten(1).mean(1))
        return r

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.predicted_residual(batch).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["k"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        r, r_ddim = self.predicted_residual(batch), batch["r_ddim"]  # (B,) each
        values = {"val/residual": r.mean(), "val/residual_ddim": r_ddim.mean(),
                  "val/start_residual": torch.minimum(r, r_ddim).mean(),
                  "val/learned_better": (r < r_ddim).float().mean()}
        self.log_dict(values, prog_bar=False, sync_dist=True, batch_size=len(batch["k"]))

    def configure_optimizers(self):
        return self.optimizer(self.net.parameters())
