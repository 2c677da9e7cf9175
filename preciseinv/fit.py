"""``python -m preciseinv.fit [overrides]``: invert a dataset with the configured model and method.

``run(cfg)`` does the work and is what tests call; ``main`` is the thin Hydra wrapper that turns a
``PreciseInvError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.resources import files
from pathlib import Path

from preciseinv.errors import PreciseInvError

CONFIG_DIR = str(files("preciseinv.configs"))


def gpu_or_fp32(precision: str) -> str:
    """A preset's precision where a GPU is present; 32-true on CPU (Lightning has no fp16 autocast there)."""
    import torch

    return str(precision) if torch.cuda.is_available() else "32-true"


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("gpu_or_fp32"):
        OmegaConf.register_new_resolver("gpu_or_fp32", gpu_or_fp32)


def build(node, **kwargs):
    """``hydra.utils.instantiate``, letting a ``PreciseInvError`` raised by a constructor through unwrapped."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, PreciseInvError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def _check_wandb(cfg) -> None:
    """Online W&B without credentials would prompt for a key; fail with the fix instead."""
    import netrc

    node = cfg.get("logger") or {}
    if "WandbLogger" not in str(node.get("_target_", "")) or node.get("offline", False):
        return
    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or os.environ.get("WANDB_API_KEY"):
        return
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    raise PreciseInvError("W&B online logging needs credentials: set WANDB_API_KEY (or run `wandb login`), "
                          "or keep logger.offline=true")


def first_process() -> bool:
    """Rank 0 of node 0 (before Lightning has set up the ranks: from the launcher's environment)."""
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def _finish(logger) -> None:
    """Close a W&B run, so that the next run of a --multirun sweep (same process) starts its own."""
    if logger and "Wandb" in type(logger).__name__:
        import wandb

        wandb.finish()


def run(cfg) -> dict:
    """Instantiate model, method, data, writer, logger and trainer from ``cfg``; predict; return the summary."""
    import lightning.pytorch as pl
    from omegaconf import OmegaConf

    from preciseinv.callbacks.writer import finished_ids
    from preciseinv.models.loading import native_resolution
    from preciseinv.module import InversionModule

    if cfg.num_steps is None or int(cfg.num_steps) < 1:
        raise PreciseInvError(f"num_steps must be at least 1, got {cfg.num_steps}; the paper's T is num_steps=2")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.output_dir)
    model_spec = build(cfg.model)
    method = build(cfg.method)
    resolution = cfg.data.get("resolution") or native_resolution(model_spec.path, model_spec.revision)
    config = OmegaConf.to_container(cfg, resolve=True)
    check_resumable(output_dir, config)
    if first_process():
        from preciseinv.callbacks.writer import repair_jsonl

        for name in ("manifest.jsonl", "failures.jsonl"):  # a run killed mid-line: cut the torn tail
            repair_jsonl(output_dir / name)
    done = finished_ids(output_dir)  # a rerun into the same output_dir skips finished samples
    datamodule = build(cfg.data, resolution=resolution, exclude=done)
    datamodule.setup("predict")  # bad data settings fail here, before any model is loaded
    module = InversionModule(model_spec, method, num_steps=cfg.num_steps, timestep_spacing=cfg.timestep_spacing,
                             guidance_scale=cfg.guidance_scale, lpips=cfg.lpips,
                             edit_guidance_scale=cfg.get("edit_guidance_scale", 7.5), sampler=cfg.get("sampler"),
                             timesteps=cfg.get("timesteps"), encoder=build(cfg.encoder) if cfg.get("encoder") else None)
    writer = build(cfg.writer, output_dir=str(output_dir))
    writer.run_config = config  # set after instantiate, which would otherwise build the _target_s inside it
    callbacks = [writer] + [build(c) for c in cfg.get("callbacks", {}).values()]
    _check_wandb(cfg)
    logger = build(cfg.logger) if cfg.get("logger") else False
    if logger and hasattr(logger, "log_hyperparams"):
        logger.log_hyperparams(config)
    if hasattr(datamodule.dataset, "__len__") and len(datamodule.dataset) == 0:  # all finished by earlier runs
        print(f"all {len(done)} samples in {output_dir} are already inverted")
        return writer.write_summary()
    trainer = build(cfg.trainer, callbacks=callbacks, logger=logger)
    try:
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    finally:
        _finish(logger)
    summary_path = output_dir / "summary.json"
    return json.loads(summary_path.read_text()) if summary_path.exists() else {}


# Settings that change what a latent means: a rerun into an output_dir must keep them to resume it.
RESUME_KEYS = (("model", "path"), ("model", "dtype"), ("model", "lora"), ("method",), ("encoder",), ("num_steps",),
               ("sampler",),
               ("timestep_spacing",), ("timesteps",),
               ("guidance_scale",), ("data", "resolution"), ("data", "crop"), ("data", "prompt"))


def check_resumable(output_dir: Path, config: dict) -> None:
    """Record the run's settings in ``run.json``; refuse to mix runs with different settings in one folder."""
    from preciseinv.outputs import atomic_write_bytes

    def pick(cfg: dict) -> dict:
        out = {}
        for path in RESUME_KEYS:
            node = cfg
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            out[".".join(path)] = node
        return out

    record = output_dir / "run.json"
    if record.exists():
        before = pick(json.loads(record.read_text()))
        now = pick(config)
        changed = [k for k in now if before.get(k) != now[k]]
        if changed:
            raise PreciseInvError(f"output_dir {str(output_dir)!r} holds a run with other settings ({', '.join(changed)}"
                                  "); rerun with the same settings to resume it, or choose another output_dir")
    elif first_process():
        atomic_write_bytes(record, json.dumps(config, indent=2).encode())


def main(config_name: str = "fit") -> None:
    import hydra

    register_resolvers()

    @hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")
    def _main(cfg) -> None:
        try:
            summary = run(cfg)
        except PreciseInvError as err:
            print(f"preciseinv: error: {err}", file=sys.stderr)
            raise SystemExit(2)
        if summary:
            shown = {k: v for k, v in summary.items() if k != "config"}
            print(json.dumps(shown, indent=2))
            print(f"outputs in {cfg.output_dir}")

    _main()


if __name__ == "__main__":
    main()
