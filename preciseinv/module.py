"""Lightning glue: ``predict_step`` = ``engine.run(batch)``.

The frozen diffusion model is loaded per rank in ``setup`` and held by the engine, outside the module's
registered children, so DDP never wraps it and no checkpoint holds it. ``Trainer(inference_mode=False)`` plus
``torch.enable_grad()`` lets the solver differentiate w.r.t. eps* inside prediction.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from lightning.pytorch import LightningModule

from preciseinv import preemption
from preciseinv.datamodules.base import ANNOTATIONS
from preciseinv.engine import InversionEngine
from preciseinv.models.base import DiffusionModel
from preciseinv.models.loading import ModelSpec


class InversionModule(LightningModule):
    """``model``: the spec loaded per rank in ``setup``; ``engine``: the engine's constructor waiting for that model
    (the ``engine`` config node, ``_partial_``; ``preciseinv.builder``)."""

    def __init__(self, model: ModelSpec, engine: Callable[[DiffusionModel], InversionEngine],
                 edit_guidance_scale: float = 7.5, edit_eval: dict | None = None):
        super().__init__()
        self.model_spec, self.make_engine = model, engine
        self.edit_guidance_scale = edit_guidance_scale
        self.edit_eval = dict(edit_eval or {})  # {clip: weights, dino: weights} for edits with masks (PIE-Bench)
        self.edit_metrics = None
        self.resolved: dict = {}  # what setup resolved (batch_size from auto): the writer records it in run.json
        self.engine: InversionEngine | None = None
        self.startup: dict[str, float] = {}  # seconds: model load, move to the device, batch probe (run.json)

    def setup(self, stage: str) -> None:
        if self.engine is None:
            start = time.perf_counter()
            model = self.model_spec.load(device="cpu")
            self.startup["model_load_s"] = round(time.perf_counter() - start, 2)
            self.engine = self.make_engine(model)
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if data is not None and str(getattr(data, "batch_size", "")) == "auto":
            self.resolved["batch_size"] = self.resolve_batch_size(data)

    def resolve_batch_size(self, data) -> int:
        """``data.batch_size=auto``: probe the device once (``preciseinv.accel.batch_size``) and agree over ranks;
        the datamodule reads the result from ``resolved`` when Lightning asks it for its loader, and the writer
        records it in run.json; rank 0 says it on the console."""
        from preciseinv.accel.batch_size import agree, probe

        device = self.trainer.strategy.root_device
        start = time.perf_counter()
        self.engine.model.to(device)
        self.startup["model_to_device_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        n = agree(probe(self.engine, data.resolution, device, str(self.trainer.precision)), self.trainer)
        self.startup["batch_probe_s"] = round(time.perf_counter() - start, 2)
        if self.trainer.is_global_zero:
            how = "probed on the GPU" if device.type == "cuda" else "CPU default"
            print(f"preciseinv: data.batch_size=auto -> {n} ({how})", flush=True)
        return n

    def on_predict_start(self) -> None:
        self.engine.model.to(self.device)
        preemption.take_over(self.trainer)
        self.engine.hooks.stop = preemption.check  # a SIGTERM / SIGINT stops the solver at its next sync point

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        preemption.check()  # a safe point: the previous batch is written
        prediction = {k: batch[k] for k in ("id", "source", "source_file", "prompt", "failures", *ANNOTATIONS)
                      if k in batch}
        prediction["output"] = None
        if batch["image"] is not None:
            with torch.enable_grad():
                out = self.engine.run(batch["image"], batch["prompt"])
            if batch.get("target") is not None:  # prompt editing: regenerate x*_T with the target prompts
                out.edit = self.engine.edit(out.latent, batch["target"], batch["prompt"], self.edit_guidance_scale,
                                            out.inversion.noises, out.inversion.companion)
                prediction["target"] = batch["target"]
                if batch.get("mask") is not None:  # PIE-Bench: background preservation, CLIP, structure
                    prediction["edit_metrics"] = self._edit_metrics(out, batch)
            prediction["output"] = out
        return prediction

    def _edit_metrics(self, out, batch: dict) -> dict[str, list | None]:
        """Per-sample editing metrics (``preciseinv.metrics.editing``); the metric models load at first use."""
        from preciseinv.metrics.editing import EditMetrics

        if self.edit_metrics is None:
            self.edit_metrics = EditMetrics(self.engine.metrics._lpips if self.engine.metrics else None,
                                            clip=self.edit_eval.get("clip"), dino=self.edit_eval.get("dino"))
        values = self.edit_metrics(out.target, out.edit, batch["mask"].to(out.edit.device), batch["target"])
        return {k: (v.tolist() if v is not None else None) for k, v in values.items()}
