"""Prep's worker processes live and die with the prep run.

Killing prep used to leave its pool workers running (about 1.5 GB, still writing spool files
after ``kill -9`` of the parent): a worker only notices its parent is gone when it next asks
for work, and one recording can take minutes. Three guards:

- :func:`watch_parent`, run in each worker at start: on Linux the kernel sends the worker
  SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``; the parent of a forkserver
  worker is the forkserver, which exits when prep does), and on every system a daemon thread
  checks every ``PARENT_POLL_S`` seconds that the prep process still exists and ends the
  worker (``os._exit``) when it does not.
- :func:`terminate_on_sigterm`: SIGTERM (``kill``, a scheduler's time limit) in prep's main
  process raises ``SystemExit(143)``, so the usual clean-up runs (unfinished shard deleted,
  spool folder removed, no manifest) and the workers are stopped.
- :func:`kill_pool`: stop the workers now, without waiting for their recordings to finish,
  whenever prep ends on an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie (a killed parent is a zombie
    until its own parent reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):  # no /proc (not Linux): kill(0) has to do
        return True


def watch_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (the prep run) dies; see the module docstring."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if not _pid_alive(parent_pid):  # died before the guard was set
        os._exit(1)

    def poll() -> None:
        while _pid_alive(parent_pid):
            threading.Event().wait(PARENT_POLL_S)
        os._exit(1)  # no clean-up: the spool folder belongs to the dead run

    threading.Thread(target=poll, name="prep-parent-watch", daemon=True).start()


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(128 + SIGTERM)`` in the main thread
    (elsewhere this does nothing: only the main thread can take signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` at once: pending work cancelled, running workers terminated."""
    # concurrent.futures has no public way to stop running workers before Python 3.14
    # (terminate_workers); their Process objects are in _processes.
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=5)
