"""Graceful preemption: SIGTERM (SLURM preemption, ``scancel``, a pod stopped) or SIGINT (Ctrl-C) stops the run at
the next safe point and leaves every finished sample published.

    with graceful():                 # fit.run: our handlers for SIGTERM and SIGINT
        trainer.predict(...)         # on_predict_start: take_over(trainer), after Lightning installed its own
    # safe points call check(): each solver sync (the batch in flight is dropped, nothing of it was written) and
    # the start of each batch; check() raises Interrupted(signum), which fit.run turns into one line and exit
    # status 128 + signum (143 for SIGTERM, 130 for SIGINT)

A second Ctrl-C stops at once (KeyboardInterrupt). SLURM's requeue signal (SIGUSR1 with ``--signal``) stays with
Lightning's SLURM environment, which requeues the job; the SIGTERM that follows comes here.
"""

from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_state = {"signum": None, "launcher": None}


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signum)


def requested() -> int | None:
    """The signal number that asked the run to stop, or None."""
    return _state["signum"]


def check() -> None:
    """At a safe point: raise ``Interrupted`` if a stop was asked for."""
    if _state["signum"] is not None:
        raise Interrupted(_state["signum"])


def _handler(signum, frame) -> None:
    if signum == signal.SIGINT and _state["signum"] == signal.SIGINT:
        raise KeyboardInterrupt  # the second Ctrl-C: stop now
    if _state["signum"] is None:
        _state["signum"] = signum
        launcher = _state["launcher"]
        if launcher is not None:  # DDP ranks started as child processes: they stop at their own safe points
            with contextlib.suppress(Exception):
                launcher.kill(signum)


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


@contextlib.contextmanager
def graceful():
    """Handle SIGTERM and SIGINT as stop requests for the duration; restore the previous handlers after."""
    _state.update(signum=None, launcher=None)
    previous = _install()
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        _state.update(launcher=None)
