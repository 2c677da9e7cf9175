"""One exception type for problems a user can fix; the CLI prints its message on one line, no traceback."""


class PreciseInvError(RuntimeError):
    """A user-facing error: the message names the problem and the fix."""


class PreciseInvWarning(UserWarning):
    """A user-facing warning: the run goes on; the CLI prints it as one line, ``preciseinv: warning: ...``."""
