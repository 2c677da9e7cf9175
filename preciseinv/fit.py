"""``python -m preciseinv.fit [overrides]``: invert a dataset with the configured model and method.

``run(cfg)`` does the work and is what tests call; ``main`` is the thin Hydra wrapper that turns a
``PreciseInvError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from preciseinv import console, preemption
from preciseinv.callbacks.loggers import logger_kind
from preciseinv.errors import PreciseInvError
from preciseinv.presets import CONFIG_DIR, adopt_family, explicit_keys, register_resolvers


def resolve_precision(cfg) -> None:
    """``trainer.precision=bf16-true`` / ``16-true`` (or a preset's ``model.precision`` of that kind): the networks'
    weights in half precision with no autocast, the solver in fp32. Lightning would also make every tensor created
    in the step half (its default dtype), ε* and the solver state included, which the residual cannot afford at
    small eta; so the weights' dtype goes to ``model.dtype`` and Lightning gets 32-true. Lightning's other
    precisions (64-true, transformer-engine) are one line."""
    from preciseinv.accel.settings import TRUE_HALF, check_precision

    try:
        precision = check_precision(cfg.trainer.get("precision"))
    except PreciseInvError as error:
        raise PreciseInvError(f"trainer.{error}") from None
    if precision in TRUE_HALF:
        if cfg.model.dtype not in ("float32", TRUE_HALF[precision]):
            raise PreciseInvError(f"trainer.precision={precision} stores the weights in {TRUE_HALF[precision]}, "
                                  f"but model.dtype={cfg.model.dtype}: set one of them")
        cfg.model.dtype = TRUE_HALF[precision]
        precision = "32-true"
    cfg.trainer.precision = precision


def check_required(cfg) -> None:
    """Values a config leaves to the command line (``???``, e.g. ``data.root`` of ``data=coco``): one line naming
    them, where OmegaConf would raise deep inside instantiation."""
    from omegaconf import OmegaConf

    missing = sorted(key for key in OmegaConf.missing_keys(cfg) if not key.startswith("hydra."))
    if missing:
        raise PreciseInvError(f"{' and '.join(missing)} must be set: add {missing[0]}=<value> to the command")


def build(node, **kwargs):
    """``hydra.utils.instantiate``, letting a ``PreciseInvError`` raised by a constructor through unwrapped, and
    Lightning's own word on a bad setting (``MisconfigurationException`` or a ``ValueError`` of a Lightning class,
    e.g. ``trainer.accelerator=gpu`` on a machine without one, ``trainer.strategy=nonsense``) as one line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause, target = err.__cause__, str(node.get("_target_", ""))
        refusals = (MisconfigurationException, ValueError) if target.startswith("lightning.") \
            else (MisconfigurationException,)
        while cause is not None and not isinstance(cause, (PreciseInvError, *refusals)):
            cause = cause.__cause__
        if isinstance(cause, refusals):
            what = target.rsplit(".", 1)[-1] or "setting"
            lines = str(cause).strip().splitlines() or [type(cause).__name__]
            raise PreciseInvError(f"{what}: {' '.join(line.strip() for line in lines)}") from None
        if cause is not None:
            raise cause from None
        raise


def command_line_overrides() -> list[str] | None:
    """The overrides this Hydra run was given (None outside a Hydra run: a composed config handed to ``run``)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return None


def resolve_model(cfg) -> None:
    """``model.path=DIR`` without a preset: the family's preset defaults and the path as the run's name
    (``preciseinv.presets.adopt_family``); what the command line set stays."""
    overrides = command_line_overrides()
    adopt_family(cfg.model, None if overrides is None else explicit_keys(overrides))


def _check_wandb(cfg) -> None:
    """Online W&B without credentials would prompt for a key; fail with the fix instead."""
    import netrc

    node = cfg.get("logger") or {}
    if logger_kind(node) != "wandb" or node.get("offline", False):
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


def _num_samples(dataset) -> int | None:
    """How many samples a dataset holds (a shape-bucketed one holds batches), None for a stream."""
    n = getattr(dataset, "num_samples", None)
    return n if n is not None else (len(dataset) if hasattr(dataset, "__len__") else None)


def _finish(logger) -> None:
    """Close a W&B run, so that the next run of a --multirun sweep (same process) starts its own."""
    if logger_kind(logger) == "wandb":
        import wandb

        wandb.finish()


def run(cfg) -> dict:
    """Instantiate model, method, data, writer, logger and trainer from ``cfg``; predict; return the summary."""
    import lightning.pytorch as pl
    from omegaconf import OmegaConf

    from preciseinv.models.loading import native_resolution, size_multiple
    from preciseinv.module import InversionModule
    from preciseinv.outputs.records import assemble, finished_ids, remove_merged
    from preciseinv.outputs.run_record import check_resumable, first_process, forget_last_run
    from preciseinv.outputs.summary import write_summary

    check_required(cfg)
    if cfg.num_steps is None or int(cfg.num_steps) < 1:
        raise PreciseInvError(f"num_steps must be at least 1, got {cfg.num_steps}; the paper's T is num_steps=2")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.output_dir)
    resolve_model(cfg)
    resolve_precision(cfg)
    model_spec = build(cfg.model)
    method = build(cfg.method)
    resolution = cfg.data.get("resolution") or native_resolution(model_spec.path, model_spec.revision)
    config = OmegaConf.to_container(cfg, resolve=True)
    check_resumable(output_dir, config)
    forget_last_run(output_dir)
    if first_process():  # a run that died: its rank files into manifest.jsonl (kept, for the ranks reading them now)
        assemble(output_dir)
    done = finished_ids(output_dir)  # a rerun into the same output_dir skips finished samples
    sizing = {}
    if cfg.data.get("crop") == "none":  # keep aspect ratios: sides become multiples of what the model needs
        sizing["size_multiple"] = size_multiple(model_spec.path, model_spec.revision)
    else:  # a square side the model cannot take: one line now, not a shape error deep in the network
        need = size_multiple(model_spec.path, model_spec.revision, strict=True)
        if int(resolution) % need:
            low, high = int(resolution) // need * need, (int(resolution) // need + 1) * need
            raise PreciseInvError(f"data.resolution={resolution} is not a multiple of {need}, which this model needs: "
                                  f"use {low or need} or {high}")
    datamodule = build(cfg.data, resolution=resolution, exclude=done, **sizing)
    datamodule.setup("predict")  # bad data settings fail here, before any model is loaded
    module = InversionModule(model_spec, method, num_steps=cfg.num_steps, timestep_spacing=cfg.timestep_spacing,
                             guidance_scale=cfg.guidance_scale, lpips=cfg.lpips,
                             edit_guidance_scale=cfg.get("edit_guidance_scale", 7.5), sampler=cfg.get("sampler"),
                             timesteps=cfg.get("timesteps"), encoder=build(cfg.encoder) if cfg.get("encoder") else None,
                             edit_eval=OmegaConf.to_container(cfg.edit_eval) if cfg.get("edit_eval") else None)
    module.run_record = output_dir / "run.json"
    writer = build(cfg.writer, output_dir=str(output_dir))
    writer.run_config = config  # set after instantiate, which would otherwise build the _target_s inside it
    callbacks = [writer] + [build(c) for c in cfg.get("callbacks", {}).values()]
    _check_wandb(cfg)
    logger = build(cfg.logger) if cfg.get("logger") else False
    if logger and hasattr(logger, "log_hyperparams"):
        logger.log_hyperparams(config)
    if hasattr(datamodule.dataset, "__len__") and len(datamodule.dataset) == 0:  # all finished by earlier runs
        if not first_process():
            return {}
        print(f"all {len(done)} samples in {output_dir} are already inverted")
        return writer.write_summary()  # rank files stay: ranks launched beside this one may be reading them
    with preemption.graceful():
        trainer = build(cfg.trainer, callbacks=callbacks, logger=logger)
        if first_process():
            print(console.header(cfg, _num_samples(datamodule.dataset), len(done)), flush=True)
        try:
            try:
                trainer.predict(module, datamodule=datamodule, return_predictions=False)
            except BaseException as err:  # under a stop request, whatever broke (a worker, a collective) is the stop
                signum = preemption.requested()
                if signum is None or isinstance(err, preemption.Interrupted):
                    raise
                raise preemption.Interrupted(signum) from err
        except preemption.Interrupted as stop:
            if trainer.global_rank != 0:  # exit 0: a non-zero child makes Lightning's launcher SIGKILL rank 0
                stop.exit_status = 0
                raise
            preemption.wait_for(preemption.child_processes(trainer), seconds=120)  # their last records
            summary = write_summary(output_dir, config)  # publish what is finished
            left = _num_samples(datamodule.dataset)
            total = None if left is None else len(done) + left
            stop.message = (f"interrupted after {summary['n']}" + (f" of {total}" if total is not None else "")
                            + " samples; rerun the same command to resume")
            raise
        finally:
            _finish(logger)
    if trainer.global_rank == 0:  # the writer merged them after every rank was done; every callback has read them
        remove_merged(output_dir)
        return json.loads((output_dir / "summary.json").read_text())
    return {}


def main(config_name: str = "fit") -> None:
    import hydra

    register_resolvers()

    @hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")
    def _main(cfg) -> None:
        try:
            with console.quiet(bool(cfg.get("verbose", False))):
                summary = run(cfg)
        except PreciseInvError as err:
            print(f"preciseinv: error: {err}", file=sys.stderr)
            raise SystemExit(2)
        except preemption.Interrupted as stop:
            if getattr(stop, "message", None):
                print(f"preciseinv: {stop.message}", file=sys.stderr)
            raise SystemExit(stop.exit_status)
        except OSError as err:
            line = console.disk_error(err, cfg.output_dir)
            if line is None:
                raise
            print(f"preciseinv: error: {line}", file=sys.stderr)
            raise SystemExit(2)
        if summary:
            if cfg.get("verbose", False):
                print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
            run_json = Path(cfg.output_dir) / "run.json"
            pace = json.loads(run_json.read_text()).get("last_run") if run_json.exists() else None
            print(console.summary_table(summary, pace))
            failed = console.failures_line(cfg.output_dir, summary)
            if failed:
                print(failed)
            print(f"outputs in {cfg.output_dir}")
            hint = console.wandb_hint(cfg.output_dir)
            if hint:
                print(hint)

    _main()


if __name__ == "__main__":
    main()
