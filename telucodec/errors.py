"""The project's own error types and the one place a command turns them into an exit code.

Two kinds of failure reach a user:
- a fault of the user's input or environment (a bad config field, a corrupt file, a full
  disk, a read-only folder): a :class:`TeluCodecError`. The command prints one line that
  names the file, field or path and exits 2; a traceback would only hide the message.
- a bug or an unexpected failure (CUDA out of memory, an NCCL error, an assertion): any
  other exception. It keeps its full traceback, because that is what a fix needs.

So a CLI catches :class:`TeluCodecError` and nothing broader (see :func:`run_cli`), and
library code converts an ``OSError`` it can attribute to a path into :class:`EnvironmentFault`
with :func:`environment_fault` instead of catching ``Exception``.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable


class TeluCodecError(Exception):
    """A user or environment error; ``str(err)`` is one line naming the file, field or path."""


class UserInputError(TeluCodecError):
    """Bad input from the user: a file, field or argument that cannot be used as given."""


class ArgumentError(UserInputError, ValueError):
    """A bad argument value (a bitrate outside the model's range, two inputs that would
    write one output); also a ``ValueError``, which library callers may expect."""


class EnvironmentFault(TeluCodecError):
    """The machine refused an operation: no space, permission denied, read-only file system.

    ``path`` is the file or folder involved; ``errno`` the OS error number where known.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None, err: int | None = None):
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)
        self.errno = err


# OS errors that are the environment's fault, not the input's: on these a batch job must stop
# (with a non-zero exit) instead of marking the current input file as rejected and going on.
ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EMFILE, errno.ENFILE}
)


def is_environment_error(exc: BaseException) -> bool:
    """True for an ``OSError`` whose errno says the machine, not the input file, is at fault."""
    return isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS


def environment_fault(exc: OSError, path: str | os.PathLike | None, doing: str) -> EnvironmentFault:
    """An :class:`EnvironmentFault` for ``exc`` met while ``doing`` (e.g. "writing shard") at
    ``path``; raise it ``from exc`` so the cause stays attached for debugging."""
    where = os.fspath(path) if path is not None else (exc.filename or "?")
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return EnvironmentFault(f"{where}: {doing} failed: {reason}", path=where, err=exc.errno)


def run_cli(prog: str, fn: Callable[[], int | None]) -> int:
    """Run a command's body; a :class:`TeluCodecError` becomes ``prog: message`` on stderr and
    exit code 2. Every other exception propagates with its traceback."""
    try:
        rc = fn()
    except TeluCodecError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0 if rc is None else int(rc)
