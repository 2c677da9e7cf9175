"""``python -m preciseinv.fit [overrides]``: invert a dataset with the configured model and method.

``run(cfg)`` does the work and is what tests call; ``main`` is the thin Hydra wrapper that turns a
``PreciseInvError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from types import MappingProxyType

from preciseinv import console, preemption
from preciseinv.builder import command_line_overrides, engine_factory, instantiate, prepare
from preciseinv.callbacks.loggers import logger_kind
from preciseinv.errors import PreciseInvError
from preciseinv.presets import CONFIG_DIR, option_of


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


UNRETRIED = "left above eta, not yet solved again by a retry solver"


def _unretried(retry: str | None):
    """With a retry solver: a finished sample's record -> ``UNRETRIED`` where some step stayed above eta and no
    retry solver has been tried on it (a run begun without one, rerun with retry=: those samples are done again;
    one a retry was tried on keeps what it has, whichever retry it was). Without one: None (nothing is redone)."""
    if retry is None:
        return None
    return lambda record: UNRETRIED if not all(record.get("converged") or [True]) and not record.get("retry") else None


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
    with contextlib.ExitStack() as held:  # the output_dir's lock, from where the run first reads the folder
        return _run(cfg, held)


def _run(cfg, held: contextlib.ExitStack) -> dict:
    import lightning.pytorch as pl
    from omegaconf import OmegaConf

    from preciseinv.models.loading import native_resolution, size_multiple, text_conditioned
    from preciseinv.outputs.lock import run_lock
    from preciseinv.outputs.records import DAMAGED, assemble, has_records, remove_merged, verify
    from preciseinv.outputs.run_record import check_resumable, first_process
    from preciseinv.outputs.summary import write_summary

    prepare(cfg, command_line_overrides())
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.output_dir)
    if cfg.data.get("root"):  # one spelling of the dataset's folder, whatever the working directory (run.json, records)
        cfg.data.root = os.path.abspath(os.path.expanduser(cfg.data.root))
    model_spec = instantiate(cfg.model)
    instantiate(cfg.method)  # a bad method or solver setting fails here, before data and model load
    if not text_conditioned(model_spec.path, model_spec.revision):
        if "edit_guidance_scale" in cfg:  # the edit command
            raise PreciseInvError(f"model {cfg.model.name} takes no text prompt, so it cannot edit by prompt: choose "
                                  "a text-conditioned model (model=sd15, sdxl, ... or model.path=DIR)")
        asked = [f"{key}={value}" for key, value in (("data.prompt", cfg.data.get("prompt")),
                                                      ("data.use_captions", cfg.data.get("use_captions")),
                                                      ("data.caption_key", cfg.data.get("caption_key"))) if value]
        asked += [f"guidance_scale={cfg.guidance_scale:g}"] if cfg.get("guidance_scale", 1.0) > 1 else []
        if asked:  # it would run, the prompt ignored
            raise PreciseInvError(f"model {cfg.model.name} takes no text prompt: drop {', '.join(asked)}, or choose a "
                                  "text-conditioned model (model=sd15, sdxl, ... or model.path=DIR)")
    resolution = cfg.data.get("resolution")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1):
        raise PreciseInvError(f"data.resolution must be a positive whole number of pixels, or null (the model's own), "
                              f"got {resolution!r}")
    resolution = resolution or native_resolution(model_spec.path, model_spec.revision)
    config = OmegaConf.to_container(cfg, resolve=True)
    if first_process():  # one run at a time in a folder; then a run that died: its rank files into manifest.jsonl
        held.enter_context(run_lock(output_dir))  # (kept, for the ranks reading them now)
        assemble(output_dir)

    def own(key: str) -> str | None:  # what sampler=null stands for: read only where one side names a sampler
        return _own_sampler(model_spec) if key == "sampler" else None

    check_resumable(output_dir, config, option_of, finished=has_records(output_dir), own=own)
    if cfg.get("verify", "size") not in ("size", "full"):
        raise PreciseInvError(f"verify must be size (stat each finished sample's files) or full (re-read and re-hash "
                              f"them), got {cfg.verify!r}")
    # a rerun into the same output_dir skips finished samples whose files are intact; the others are redone
    inputs: dict[str, dict] = {}  # what each recorded sample was made from (read in the same pass)
    retry = console.config_name(cfg.method.get("retry"))  # the retry solver's name (retry=spectral), or None
    done, damaged = verify(output_dir, full=cfg.get("verify") == "full", inputs=inputs, redo=_unretried(retry))
    again = [i for i, why in damaged.items() if why == UNRETRIED]
    if first_process() and len(again) < len(damaged):
        some, why = next((i, why) for i, why in damaged.items() if why != UNRETRIED)
        print(f"preciseinv: {len(damaged) - len(again)} finished sample(s) have missing or damaged files ({some}: "
              f"{why}); inverting them again", flush=True)
    if first_process() and again:
        print(f"preciseinv: {len(again)} finished sample(s) left above eta without retry={retry} (e.g. {again[0]}): "
              f"inverting them again with it", flush=True)
    sizing = {}
    if cfg.data.get("crop") == "none":  # keep aspect ratios: sides become multiples of what the model needs
        sizing["size_multiple"] = size_multiple(model_spec.path, model_spec.revision)
    else:  # a square side the model cannot take: one line naming the sizes it takes
        need = size_multiple(model_spec.path, model_spec.revision, strict=True)
        if int(resolution) % need:
            low, high = int(resolution) // need * need, (int(resolution) // need + 1) * need
            raise PreciseInvError(f"data.resolution={resolution} is not a multiple of {need}, which this model needs: "
                                  f"use {low or need} or {high}")
    # what each finished sample was made from; a read-only mapping, which Hydra passes on as it is (a dict it would
    # copy into the config: seconds per 10,000 samples)
    finished = MappingProxyType({i: inputs[i] for i in done})
    datamodule = instantiate(cfg.data, resolution=resolution, exclude=finished, **sizing)
    datamodule.check_output_dir(output_dir)
    datamodule.setup("predict")  # bad data settings fail here, before any model is loaded
    module = instantiate(cfg.module, model=model_spec, engine=engine_factory(cfg))
    writer = instantiate(cfg.writer, output_dir=str(output_dir))
    writer.run_config = config  # set after instantiate, which would otherwise build the _target_s inside it
    callbacks = [writer] + [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    _check_wandb(cfg)
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    if logger and hasattr(logger, "log_hyperparams"):
        logger.log_hyperparams(config)
    if hasattr(datamodule.dataset, "__len__") and len(datamodule.dataset) == 0:  # all finished by earlier runs
        if not first_process():
            return {}
        print(f"every image of the dataset is already inverted in {output_dir} ({len(done)} samples there)")
        (output_dir / DAMAGED).unlink(missing_ok=True)  # what manifest --verify listed is intact (re-hashed above)
        writer.forget_last_run()
        return writer.write_summary()  # rank files stay: ranks launched beside this one may be reading them
    preemption.announce_dead_rank()  # a rank killed outright: the last line says that a rerun resumes
    with preemption.graceful():
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
        if first_process():
            kind = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()  # cpu, cuda, mps
            print(console.header(cfg, _num_samples(datamodule.dataset), len(done), cfg.get("sampler") or _own_sampler(model_spec),
                                 f"{trainer.num_devices} ({kind})"), flush=True)
        try:
            try:
                console.bar_opened()
                trainer.predict(module, datamodule=datamodule, return_predictions=False)
                console.bar_opened(False)
            except BaseException as err:  # under a stop request, whatever broke (a worker, a collective) is the stop
                signum = preemption.requested()
                dead = preemption.dead_ranks(trainer)
                if signum is None and dead and not isinstance(err, preemption.Interrupted):  # a collective broke
                    rank, status = dead[0]
                    raise PreciseInvError(f"rank {rank} of this run died (exit status {status}: killed, or out of "
                                          f"memory); {preemption.resume_hint()}") from None
                if signum is None or isinstance(err, preemption.Interrupted):
                    raise
                raise preemption.Interrupted(signum) from err
        except preemption.Interrupted as stop:
            if trainer.global_rank != 0:  # exit 0: a non-zero child makes Lightning's launcher SIGKILL rank 0
                stop.exit_status = 0
                raise
            preemption.wait_for(preemption.child_processes(trainer), seconds=120)  # their last records
            left = _num_samples(datamodule.dataset)
            total = None if left is None else len(done) + left
            summary = write_summary(output_dir, config, complete=False, total=total)  # publish what is finished
            stop.message = (f"interrupted after {summary['n']}" + (f" of {total}" if total is not None else "")
                            + f" samples; {preemption.resume_hint(None)}")
            raise
        finally:
            _finish(logger)
    if trainer.global_rank == 0:  # the writer merged them after every rank was done; every callback has read them
        remove_merged(output_dir)
        (output_dir / DAMAGED).unlink(missing_ok=True)  # what manifest --verify listed is redone
        return json.loads((output_dir / "summary.json").read_text())
    return {}


def main(config_name: str = "fit") -> None:
    with console.interruptible():  # Ctrl-C from the first import on: one line
        _command(config_name)


def _command(config_name: str) -> None:
    import hydra

    console.command_line(config_name)
    unreadable: list[str] = []  # the runs none of whose inputs could be read

    @hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")
    def _main(cfg) -> None:
        try:
            preemption.command_started()  # a Ctrl-C while the libraries started stops here
            preemption.note_run_folder()  # what the hints say resumes it
            from preciseinv.outputs.run_record import note_command_record

            note_command_record(cfg.output_dir)  # Hydra's record of this command, before another can rewrite it
            with console.quiet(bool(cfg.get("verbose", False))):
                summary = run(cfg)
        except PreciseInvError as err:
            console.leave_run_dir(cfg.output_dir)
            console.fail(err)
        except KeyboardInterrupt:  # a Ctrl-C as the command started or loaded: stopped before it wrote anything
            if console.leave_run_dir(cfg.output_dir):
                preemption.forget_run_folder()  # nothing was kept there to resume
            raise
        except preemption.Interrupted as stop:
            if getattr(stop, "message", None):
                console.close_bar_line()
                print(f"preciseinv: {stop.message}", file=sys.stderr)
            raise SystemExit(stop.exit_status)
        except OSError as err:
            line = console.disk_error(err, cfg.output_dir)
            if line is None:
                raise
            console.fail(line)
        if summary:
            if cfg.get("verbose", False):
                print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
            print("\n".join(closing_lines(cfg, summary)))
            if not summary.get("n") and summary.get("n_failed"):  # not one input could be read: a failed run
                unreadable.append(cfg.output_dir)  # (a sweep's other runs go on)

    _main()
    if unreadable:  # exit status 1 once the sweep (or the one run) is over
        raise SystemExit(1)


def _own_sampler(model_spec) -> str | None:
    """The model's own sampler (read from its scheduler config; None where that cannot be read before the load)."""
    from preciseinv.models.loading import native_sampler

    try:
        return native_sampler(model_spec.path, model_spec.revision)
    except Exception:  # its configs not readable before the load: the load says why
        return None


def closing_lines(cfg, summary: dict) -> list[str]:
    """What a finished run prints: its table, why samples failed (if some did), where the outputs are and, when
    this run logged to W&B offline, how to upload it."""
    from preciseinv.outputs.run_record import read_record

    pace = (read_record(Path(cfg.output_dir) / "run.json") or {}).get("last_run")
    lines = [console.summary_table(summary, pace), console.failures_line(cfg.output_dir, summary),
             f"outputs in {cfg.output_dir}"]
    logger = cfg.get("logger") or {}
    offline = logger.get("offline", False) or os.environ.get("WANDB_MODE") == "offline"
    if logger_kind(logger) == "wandb" and offline:  # else an offline run in the folder is an earlier run's
        lines.append(console.wandb_hint(cfg.output_dir))
    return [line for line in lines if line]


if __name__ == "__main__":
    main()
