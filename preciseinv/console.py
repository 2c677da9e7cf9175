"""A quiet, useful console for ``python -m preciseinv.fit``: one header line, the progress bar, the summary as a
small table; library chatter (Lightning's hardware lines and tips, deprecation warnings, the W&B banner) only with
``verbose=true``. Warnings that ask the user to act (LPIPS weights missing, a bad input) still show, once each."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import warnings
from pathlib import Path

from preciseinv.errors import PreciseInvWarning

DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def plain(doc: str) -> str:
    """A module docstring as a command's --help: without its reStructuredText quotes (``...``)."""
    return doc.replace("``", "").strip()


_bar_open = False  # the progress bar (stdout) may hold the terminal's last line, unfinished


def bar_opened(is_open: bool = True) -> None:
    """Prediction starts (its progress bar may be left mid-line) or ends (the bar finished its line)."""
    global _bar_open
    _bar_open = is_open


def close_bar_line() -> None:
    """Before a closing message: end a progress bar's unfinished line (on a terminal, or in a job's log file, where
    the bar's updates are carriage returns too), so the message has its own."""
    if _bar_open:
        print(file=sys.stdout, flush=True)
    bar_opened(False)


def fail(message) -> None:
    """The end of a command that cannot go on: one line on stderr, exit status 2."""
    close_bar_line()
    print(f"preciseinv: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def drop_unused_run_dir(output_dir) -> bool:
    """A command stopped by a mistake before it wrote anything: its output_dir holds only Hydra's ``.hydra/``
    record (Hydra makes the folder before the command's code runs). Remove it, so that a mistake leaves no folder;
    a folder holding anything else (an earlier run's outputs) is left as it is. Only the first process does it: the
    other ranks of a multi-process run share the folder (and see rank 0's record, not their own). Returns whether
    it removed the folder."""
    import shutil

    from preciseinv.outputs.run_record import first_process

    if not first_process():
        return False
    from preciseinv.outputs.lock import LOCK, holder

    folder = Path(output_dir)
    with contextlib.suppress(OSError):
        names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        if ".hydra" in names and names <= {".hydra", LOCK} and holder(folder) is None:  # not a live run's
            shutil.rmtree(folder)
            day = folder.parent
            # Hydra's default outputs/<date>/<time>/ (<time>-<command>/): the date folder it made, if now empty
            default = re.fullmatch(r"\d{2}-\d{2}-\d{2}(-[a-z_]+)?", folder.name) \
                and re.fullmatch(r"\d{4}-\d{2}-\d{2}", day.name) and day.parent.name == "outputs"
            if default and not any(day.iterdir()):
                day.rmdir()
            return True
    return False


def leave_run_dir(output_dir) -> bool:
    """A command stopped before it started (a mistake, a refusal, a Ctrl-C): its folder goes where it holds nothing
    else (``drop_unused_run_dir``); in a folder an earlier run owns, that run's ``.hydra/`` record goes back in
    place of the one Hydra wrote for this command (not while a live run holds the folder). Returns whether it
    removed the folder."""
    if drop_unused_run_dir(output_dir):
        return True
    from preciseinv.outputs.lock import holder
    from preciseinv.outputs.run_record import restore_hydra_record

    with contextlib.suppress(OSError):  # a folder it cannot write: the stop's own line matters more
        if holder(Path(output_dir)) is None:
            restore_hydra_record(output_dir)
    return False


def command_line(config_name: str) -> None:
    """What a command does before Hydra sees ``sys.argv``: ``--help`` prints the groups, their options and the
    settings people change most; a mistake is one line and exit 2; ``output_dir=DIR`` becomes Hydra's run folder."""
    from preciseinv.errors import PreciseInvError
    from preciseinv.presets import (check_command_line, help_text, null_choices, register_resolvers,
                                    run_dir_from_output_dir)

    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        try:
            print(help_text(config_name), flush=True)
        except BrokenPipeError:  # --help | head: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)
    register_resolvers()
    sweep = [arg for arg in sys.argv[1:] if arg in ("-m", "--multirun")]  # Hydra reads it only before the overrides
    sys.argv = [sys.argv[0], *sweep, *null_choices(config_name, [arg for arg in sys.argv[1:] if arg not in sweep])]
    try:
        check_command_line(config_name, sys.argv[1:])
        check_not_in_use(sys.argv[1:])
    except PreciseInvError as err:
        fail(err)
    sys.argv = run_dir_from_output_dir(sys.argv)
    sys.argv = pinned_sweep_dir(sys.argv)


def pinned_sweep_dir(argv: list[str]) -> list[str]:
    """A ``--multirun`` without ``hydra.sweep.dir=``: the dated folder Hydra would make (``multirun/<date>/<time>``)
    is fixed here, once, and added to the command line, so that the other processes of a multi-GPU run, which
    start the command again, write into the same sweep folder (each would date its own). The folder is noted
    (``PRECISEINV_DATED_SWEEP``), so the resume hints still name it."""
    import datetime

    from preciseinv.presets import MULTIRUN

    if not any(arg in MULTIRUN for arg in argv) or any(
            arg.lstrip("+").startswith("hydra.sweep.dir=") for arg in argv):
        return argv
    folder = os.environ.get("PRECISEINV_DATED_SWEEP") or datetime.datetime.now().strftime(
        "multirun/%Y-%m-%d/%H-%M-%S")
    os.environ["PRECISEINV_DATED_SWEEP"] = folder  # the other ranks inherit it
    return [*argv, f"hydra.sweep.dir={folder}"]


def check_not_in_use(argv: list[str]) -> None:
    """``output_dir=DIR`` held by a live run: refused before Hydra writes its record into DIR."""
    from preciseinv.outputs.lock import holder, in_use
    from preciseinv.outputs.run_record import first_process

    given = [arg.split("=", 1)[1] for arg in argv if arg.startswith("output_dir=")]
    if given and first_process():  # the other ranks of a run start while their rank 0 holds it
        owner = holder(Path(given[-1]).expanduser())
        if owner:
            raise in_use(given[-1], owner)


@contextlib.contextmanager
def interruptible(resumable=True, hydra: bool = True):
    """Ctrl-C before the run has its own handlers (imports, model load): one line and exit 130, no traceback.
    ``resumable``: a command that resumes into its output_dir (fit, edit) says so (a string: in its words).
    ``hydra``: the command composes
    a Hydra config first, and a Ctrl-C meanwhile waits for its own code (``preemption.command_started``); without,
    Ctrl-C stops it at once throughout."""
    from preciseinv import preemption

    try:
        with preemption.remember_early_ctrl_c():
            if not hydra:
                preemption.command_started()
            yield
    except KeyboardInterrupt:
        hint = resumable() if callable(resumable) else resumable if isinstance(resumable, str) else \
            preemption.resume_hint("finished samples are kept") if resumable else ""
        print("preciseinv: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        raise SystemExit(130) from None


# Lightning's informational lines that ask nothing of the user (hardware summary, tips, rank bookkeeping)
NOISE = ("GPU available", "TPU available", "HPU available", "IPU available", "Tip:", "LOCAL_RANK:",
         "Initializing distributed", "distributed_backend=", "All distributed processes registered", "-" * 20,
         "You are using a CUDA device", "Seed set to")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in NOISE)


@contextlib.contextmanager
def quiet(verbose: bool):
    """For the duration of a CLI run: Lightning's lines once (its own handler, never again through Hydra's root
    handler); without ``verbose``, its uninformative ones dropped, deprecation warnings off and no W&B banner.
    Warnings that ask the user to act (a LoRA that matched nothing, LPIPS weights missing, a dead rank) stay."""
    import lightning.pytorch  # noqa: F401  (it adds its handlers on import: filter those)

    lightning = logging.getLogger("lightning")
    propagate, drop = lightning.propagate, _DropNoise()
    lightning.propagate = False  # it has its own handler; Hydra's root handler would repeat each line
    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, *args, **kwargs):  # the project's warnings: one line, no source line
            if issubclass(category, PreciseInvWarning):
                close_bar_line()
                print(f"preciseinv: warning: {message}", file=sys.stderr, flush=True)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = one_line
        if not verbose:
            for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
                for handler in logging.getLogger(name).handlers:
                    handler.addFilter(drop)
            os.environ.setdefault("WANDB_SILENT", "true")
            for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
                warnings.filterwarnings("ignore", category=category)
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")  # chosen on purpose
        try:
            yield
        finally:
            lightning.propagate = propagate
            for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
                for handler in logging.getLogger(name).handlers:
                    handler.removeFilter(drop)


def wandb_hint(output_dir) -> str | None:
    """Where an offline W&B run went and how to upload it (the banner that said so is silenced)."""
    runs = sorted(Path(output_dir, "wandb").glob("offline-run-*"))
    return f"W&B run saved offline: upload with `wandb sync {runs[-1]}`" if runs else None


def failures_line(output_dir, summary: dict) -> str | None:
    """Why samples failed, when some did: how many, the first one's id and reason, and where the rest are."""
    n = summary.get("n_failed") or 0
    path = Path(output_dir, "failures.jsonl")
    if not n or not path.exists():
        return None
    import json

    with open(path) as lines:  # the first whole record; a run's file may be long
        for line in lines:
            try:
                first = json.loads(line)
            except json.JSONDecodeError:  # a torn line a dead run left
                continue
            more = f" (and {n - 1} more)" if n > 1 else ""
            return f"failed: {first.get('id')}: {first.get('reason')}{more}; all in {path}"
    return None


def header(cfg, n_images: int | None, n_done: int, sampler: str | None = None, devices: str | None = None) -> str:
    """One line: what runs, on what, into where; ``sampler`` and ``devices``: what ``auto`` settled on."""
    method, solver = config_name(cfg.method), config_name(cfg.get("solver"))
    path = cfg.model.get("path")
    model = cfg.model.name + (f" ({path})" if path and path != cfg.model.name else "")  # the preset, and what loads
    parts = [f"model={model}", f"method={method}"]
    if solver and method == "preciseinv":
        parts.append(f"solver={solver}")
    init = config_name(cfg.get("init"))
    if init and init != "ddim" and method == "preciseinv":  # the paper's start goes without saying
        parts.append(f"init={init}")
    retry = config_name(cfg.method.get("retry"))
    if retry:
        parts.append(f"retry={retry}")
    parts += [f"sampler={cfg.get('sampler') or sampler or 'auto'}", f"T={cfg.num_steps}"]
    if cfg.method.get("eta") is not None:
        parts.append(f"eta={cfg.method.eta:g}")
    total = "?" if n_images is None else str(n_images + n_done)
    parts += [f"images={total}" + (f" ({n_done} done)" if n_done else ""),
              f"devices={devices or cfg.trainer.get('devices', 1)}", f"output_dir={cfg.output_dir}"]
    return "preciseinv: " + " ".join(parts)


def _exact(node) -> bool:
    """The method config ``node`` is of an exact method (its reconstruction is the input: no eta to meet)."""
    from preciseinv.methods import EXACT_METHODS

    return config_name(node) in EXACT_METHODS


def config_name(node) -> str | None:
    """The name a method or solver config goes by (its class's ``name``: ``ddim``, ``fixed_point``), else the
    class's name in lower case; None for no config."""
    if not node:
        return None
    target = str(node.get("_target_", "?"))
    try:
        from hydra.utils import get_class

        return str(getattr(get_class(target), "name"))
    except Exception:  # not importable here, or no name: the class's own name
        return target.rsplit(".", 1)[-1].lower()


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(summary: dict, pace: dict | None = None) -> str:
    """The summary as a two-line table; ``pace``: run.json ``last_run`` (this run's steady images per second, all
    ranks, its first batch left out; "-" for a run of one batch a rank)."""
    cols = [("images", str(summary.get("n"))), ("failed", str(summary.get("n_failed"))),
            ("PSNR", fmt(summary.get("psnr_mean"), ".2f")), ("SSIM", fmt(summary.get("ssim_mean"), ".4f")),
            ("LPIPS", fmt(summary.get("lpips_mean"), ".4f")),
            ("converged", "exact" if _exact((summary.get("config") or {}).get("method"))
             else fmt(summary.get("converged_fraction"), ".0%")),
            ("cost/image", fmt(summary.get("cost_mean"), ".0f")),
            ("s/image", fmt(summary.get("seconds_per_image"), ".3f")),
            ("peak MB", fmt(summary.get("peak_memory_mb"), ".0f")),
            ("img/s", fmt((pace or {}).get("steady_images_per_second"), ".2f"))]
    return table(cols)


def table(cols: list[tuple[str, str]]) -> str:
    """(heading, value) pairs as two aligned lines."""
    widths = [max(len(k), len(v)) for k, v in cols]
    return "\n".join("  ".join(text.ljust(w) for text, w in zip(row, widths)).rstrip()
                     for row in ([k for k, _ in cols], [v for _, v in cols]))


def disk_error(err: OSError, output_dir) -> str | None:
    """One line for a full disk, a quota, a read-only or unwritable folder; None for other OS errors. It names
    output_dir when the failed path is inside it (or unknown), else the path that failed (a cache, /tmp)."""
    from preciseinv import preemption

    if err.errno not in DISK_ERRORS:
        return None
    fix = ("free space there" if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
           else "make it writable")
    paths = [Path(p).resolve() for p in (err.filename, err.filename2) if p]
    inside = not paths or any(p.is_relative_to(Path(output_dir).resolve()) for p in paths)
    if not inside:
        return f"cannot write {str(paths[0])!r} ({os.strerror(err.errno)}): {fix}; it is outside output_dir"
    return (f"cannot write in output_dir {str(output_dir)!r} ({os.strerror(err.errno)}): {fix} or choose another "
            f"output_dir; {preemption.resume_hint('finished samples are kept')}")
