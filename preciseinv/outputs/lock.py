"""One run at a time in an output_dir: its first process holds ``.lock`` (an advisory ``flock``) while it runs.

Two runs of the same command into one folder (a job submitted twice, a requeue that overlaps the job it replaces)
would each invert the samples not yet finished and write them twice; the second is refused in one line naming the
first. The operating system drops the lock when its process ends however it ends (kill -9 included), so a dead run
never blocks its rerun. On a filesystem without locks (some network mounts) runs go unguarded, as before.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

from preciseinv.errors import PreciseInvError

LOCK = ".lock"


def _owner(handle) -> str:
    handle.seek(0)
    return handle.read().strip() or "another process"


def in_use(output_dir, owner: str, what: str = "run") -> PreciseInvError:
    return PreciseInvError(f"output_dir {str(output_dir)!r} is in use by another {what} ({owner}): wait for it to "
                           "end, or choose another output_dir")


@contextlib.contextmanager
def run_lock(output_dir: str | os.PathLike, what: str = "run"):
    """Hold ``output_dir/.lock`` for the block; another process holding it: one line naming it."""
    import fcntl

    path = Path(output_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    handle = open(path, "a+")
    locked = True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _owner(handle)
        handle.close()
        raise in_use(output_dir, owner, what) from None
    except OSError:  # no locks on this filesystem: unguarded, and no lock file to suggest otherwise
        locked = False
        if created:
            path.unlink(missing_ok=True)
    try:
        if locked:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            handle.flush()
        yield
    finally:
        if locked:
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def released_here(output_dir: str | os.PathLike) -> bool:
    """The folder's lock was taken on this machine and is free now: the run that held it is over. (A lock taken on
    another machine may be invisible here, as on NFS with locks local to each client: no conclusion.)"""
    import fcntl

    path = Path(output_dir) / LOCK
    try:
        with open(path) as handle:
            if f" on {socket.gethostname()}," not in _owner(handle):
                return False
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True
    except OSError:  # no lock file, held (BlockingIOError), or no locks on this filesystem
        return False


def holder(output_dir: str | os.PathLike) -> str | None:
    """Who holds ``output_dir``'s lock (``pid N on HOST, since ...``), None when no process does."""
    import fcntl

    path = Path(output_dir) / LOCK
    if not path.is_file():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _owner(handle)
        except OSError:
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
