"""Graceful preemption: SIGTERM (SLURM preemption, ``scancel``, a pod stopped) or SIGINT (Ctrl-C) stops the run at
the next safe point and leaves every finished sample published.

    with graceful():                 # fit.run: our handlers for SIGTERM and SIGINT
        trainer.predict(...)         # on_predict_start: take_over(trainer), after Lightning installed its own
    # safe points call check(): each solver sync (the batch in flight is dropped, nothing of it was written) and
    # the start of each batch; check() raises Interrupted(signum), which fit.run turns into one line and exit
    # status 128 + signum (143 for SIGTERM, 130 for SIGINT)

A second Ctrl-C stops at once (KeyboardInterrupt). Before all this, while a command starts (imports, Hydra's
composition), ``remember_early_ctrl_c`` holds a first Ctrl-C back until the command's own code begins, and after
that, inside an import, until the import is done (a 50 ms SIGALRM timer looks). SLURM's
requeue signal (SIGUSR1 with ``--signal``) stays with Lightning's SLURM environment, which requeues the job; the
SIGTERM that follows comes here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_state = {"signum": None, "launcher": None, "forwarded": False, "early": False, "defer": False, "pending": False,
          "alarm": None}


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_status = 128 + int(signum)  # 143 for SIGTERM, 130 for SIGINT (0 for DDP children)
        self.message: str | None = None  # the one line rank 0 prints


def requested() -> int | None:
    """The signal number that asked the run to stop, or None."""
    return _state["signum"]


def check() -> None:
    """At a safe point: raise ``Interrupted`` if a stop was asked for."""
    if _state["signum"] is not None:
        raise Interrupted(_state["signum"])


def _forward() -> None:
    """Ask the DDP ranks started as child processes to stop at their own safe points. Always as SIGTERM: a
    terminal's Ctrl-C already reached them (it signals the whole process group), and a forwarded SIGINT on top of it
    would read as a second Ctrl-C there."""
    launcher = _state["launcher"]
    if launcher is not None and not _state["forwarded"]:
        _state["forwarded"] = True
        with contextlib.suppress(Exception):
            launcher.kill(signal.SIGTERM)


def _handler(signum, frame) -> None:
    if signum == signal.SIGINT and _state["signum"] == signal.SIGINT:
        raise KeyboardInterrupt  # the second Ctrl-C: stop now
    if _state["signum"] is None:
        _state["signum"] = signum
        _forward()


def _in_import(frame) -> bool:
    """Whether the interrupted code runs inside an import. Raised there, a KeyboardInterrupt can leave a library
    half initialised (numpy's lazy submodules then recurse without end), and CPython reports the exit as a death
    by SIGINT whatever status the command then chose."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _after_import(signum, frame) -> None:
    """SIGALRM while a Ctrl-C waits for an import to finish: raise it once the import is done."""
    if not _state["pending"]:
        return
    if _in_import(frame):
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    _cancel_pending()
    raise KeyboardInterrupt


def _hold_until_imported() -> bool:
    """Arm a 50 ms timer that raises the remembered Ctrl-C as soon as no import is running (False: no timer here)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    _state["alarm"] = signal.signal(signal.SIGALRM, _after_import)
    _state["pending"] = True
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    return True


def _cancel_pending() -> None:
    if _state["pending"]:
        _state["pending"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, _state["alarm"] if _state["alarm"] is not None else signal.SIG_DFL)


def _early_handler(signum, frame) -> None:
    first = not _state["early"]
    _state["early"] = True
    if first and _state["defer"]:
        return  # remembered until the command's own code begins
    if first and _in_import(frame) and _hold_until_imported():
        return  # raised as soon as the import is done
    raise KeyboardInterrupt


@contextlib.contextmanager
def remember_early_ctrl_c():
    """While a command starts: a first Ctrl-C during the libraries' imports and Hydra's composition is remembered
    (raised there, it was swallowed by some of them and wrapped in their own error by others) and stops the
    command when its own code begins (``command_started``); a second one stops it at once. From
    ``command_started`` on, Ctrl-C raises KeyboardInterrupt at once, and ``graceful()`` still refuses to start a
    run after one that a library swallowed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.update(early=False, defer=True)
    previous = signal.signal(signal.SIGINT, _early_handler)
    try:
        yield
    finally:  # SIGINT held back while the handler is restored: a Ctrl-C now goes to the previous one after
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            _cancel_pending()
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
            _state.update(early=False, defer=False)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def command_started() -> None:
    """First thing in a command's own code (after Hydra composed its config): stop on a Ctrl-C remembered while
    the command started; from here on, Ctrl-C raises KeyboardInterrupt at once, but inside an import, where a first
    one waits for the import to finish."""
    _state["defer"] = False
    if _state["early"]:
        raise KeyboardInterrupt


def _install() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _handler)
    return previous


def take_over(trainer) -> None:
    """Put our handlers back after Lightning installed its own (its SIGTERM handler broadcasts over the process
    group from inside the handler, which hangs when the other ranks are not in a collective)."""
    launcher = getattr(trainer.strategy, "launcher", None)
    _state["launcher"] = launcher if type(launcher).__name__ == "_SubprocessScriptLauncher" else None
    _install()
    if _state["signum"] is not None:  # a signal came while the model loaded: the children have not heard of it
        _forward()


def child_processes(trainer) -> list:
    """The DDP ranks this process started (Lightning's subprocess launcher), else []."""
    launcher = getattr(trainer.strategy, "launcher", None)
    return list(getattr(launcher, "procs", None) or []) if type(launcher).__name__ == "_SubprocessScriptLauncher" else []


def dead_ranks(trainer) -> list[tuple[int, int]]:
    """(rank, exit status) of each DDP rank this process started that has died with a non-zero status."""
    dead = []
    for rank, proc in enumerate(child_processes(trainer), start=1):
        if proc.poll() not in (None, 0):
            dead.append((rank, proc.returncode))
    return dead


_RERUN = {"how": "rerun the same command"}  # what resumes this run (note_run_folder, once the run folder is known)


def note_run_folder() -> None:
    """Inside a Hydra run: whether the same command finds this run's folder again. A folder it names
    (``output_dir=``, ``hydra.sweep.dir=``) it does; a folder Hydra dated (``outputs/<date>/<time>``,
    ``multirun/<date>/<time>``) it does not, and the hints name the setting that does."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    config = HydraConfig.get()
    hydra_set = [o.lstrip("+") for o in config.overrides.hydra]
    if config.mode == RunMode.MULTIRUN:  # a folder the command dated (console.pinned_sweep_dir) is not named
        dated = os.environ.get("PRECISEINV_DATED_SWEEP")
        pinned = any(o.startswith("hydra.sweep.dir=") and o != f"hydra.sweep.dir={dated}" for o in hydra_set)
        setting = f"hydra.sweep.dir={config.sweep.dir}"
    else:
        pinned = any(o.startswith("output_dir=") for o in config.overrides.task) or any(
            o.startswith("hydra.run.dir=") for o in hydra_set)
        setting = f"output_dir={config.runtime.output_dir}"
    _RERUN["how"] = "rerun the same command" if pinned else f"rerun the same command with {setting}"


def forget_run_folder() -> None:
    """The run's folder was removed unused: the hints name no setting."""
    _RERUN["how"] = "rerun the same command"


def resume_hint(kept: str | None = "every finished sample is kept") -> str:
    """``[<kept>: ]rerun the same command[ with <the setting that finds this run's folder>] to resume``."""
    return (f"{kept}: " if kept else "") + f"{_RERUN['how']} to resume"


@contextlib.contextmanager
def graceful():
    """Handle SIGTERM and SIGINT as stop requests for the duration; restore the previous handlers after. A Ctrl-C
    remembered by ``remember_early_ctrl_c`` (one a library swallowed) stops here, before the run starts."""
    if _state["early"]:
        _cancel_pending()
        raise KeyboardInterrupt
    _state.update(signum=None, launcher=None, forwarded=False)
    previous = _install()
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        _state.update(signum=None, launcher=None, forwarded=False)


def wait_for(processes: list, seconds: float) -> None:
    """Wait (at most ``seconds`` in all) for child processes to finish their last records and exit."""
    import time

    deadline = time.monotonic() + seconds
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))


def ignore_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGTERM, SIGINT and SLURM's SIGUSR1 to the main process (a
    worker killed by a signal would make the loader raise at an arbitrary point)."""
    for s in (*SIGNALS, signal.SIGUSR1):
        signal.signal(s, signal.SIG_IGN)


class _DeadRank(logging.Handler):
    """Lightning's launcher says a child rank died ("... Forcefully terminating all other processes") and then
    SIGKILLs every process, itself included, so nothing of ours runs after it: this handler adds, right after that
    line, the one the user needs."""

    def emit(self, record: logging.LogRecord) -> None:
        if "Forcefully terminating" in record.getMessage():
            import sys

            sys.stderr.write(f"{record.getMessage()}\npreciseinv: a process of this run died (killed, or out of "
                             f"memory); {resume_hint()}\n")
            sys.stderr.flush()


def announce_dead_rank() -> None:
    """Install ``_DeadRank`` on the launcher's logger (once), at INFO whatever the console's quiet mode does."""
    log = logging.getLogger("lightning.fabric.strategies.launchers.subprocess_script")
    if not any(isinstance(h, _DeadRank) for h in log.handlers):
        log.addHandler(_DeadRank())
        log.setLevel(logging.INFO)
        log.propagate = False  # its line is written by the handler, once
