"""Stop on request, with a checkpoint: a signal (SIGTERM, SIGUSR1) or a stop file.

Why: schedulers end jobs at their time limit and on preemption. Without a save on the way
out, a job loses everything since its last checkpoint (up to ``checkpoint.every_steps``
steps) and leaves no export. A request is only recorded here; the training loop acts on
it at a step boundary, where every rank agrees on it (``trainer.train._agree``), then saves,
exports and exits 0 like a run that reached ``max_steps``.

Two ways to ask:
- a signal in ``run.stop_signals`` (default SIGTERM and SIGUSR1). SLURM sends SIGTERM at
  the time limit and on preemption, and ``accelerate launch``/torchrun forward it to the
  workers, then kill them after 30 s; the loop must reach an agreement step and save in that
  window (``run.agree_every``). A repeated signal is only logged: the launcher's kill is the
  way to force an exit. SIGINT (Ctrl-C) is not in the list by default, so it still stops at
  once, without a save.
- a stop file (``run.stop_file``, default ``<run_dir>/STOP``) touched after the run began.
  Signals sent to a whole job step reach the launcher too, and torchrun's default action for
  SIGUSR1 is to die; a file needs no signal plumbing, so launch/slurm_multinode.sbatch
  traps SLURM's early warning in the batch shell and touches the file. The file is removed
  once the run has stopped on it, and one older than the run is ignored (a requeued job
  finds the previous job's file).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import torch

log = logging.getLogger("telucodec")


def parse_signals(names: Sequence[str]) -> list[signal.Signals]:
    """``["SIGTERM", "USR1"]`` -> signals; a clear error for a name this OS does not know."""
    out = []
    for name in names:
        full = name if name.upper().startswith("SIG") else f"SIG{name}"
        try:
            out.append(signal.Signals[full.upper()])
        except KeyError:
            raise ValueError(f"unknown signal name {name!r} (e.g. SIGTERM, SIGUSR1)") from None
    return out


def ignore_signals(signals: Sequence[int], _worker_id: int | None = None) -> None:
    """DataLoader ``worker_init_fn``: leave these signals to the main process.

    SLURM signals every process of a job step, DataLoader workers included. A worker killed
    by SIGTERM makes the main process's next batch fetch raise, before it can save; ignoring
    the signal keeps the workers alive until the main process finishes and shuts them down.
    """
    for s in signals:
        signal.signal(s, signal.SIG_IGN)


class StopRequest:
    """Records stop requests; :meth:`reason` says whether one came and which."""

    def __init__(self, signals: Sequence[str], stop_file: str | os.PathLike | None) -> None:
        self.signals = parse_signals(signals)
        self.stop_file = Path(stop_file) if stop_file else None
        self.since = time.time()
        self._received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def install(self) -> StopRequest:
        """Install the handlers (main thread only; elsewhere the signals are left alone)."""
        for s in self.signals:
            try:
                self._previous[s] = signal.signal(s, self._on_signal)
            except ValueError:  # not the main thread (e.g. training called from a thread)
                log.warning(
                    "cannot handle %s outside the main thread; it keeps its default", s.name
                )
        return self

    def restore(self) -> None:
        for s, prev in self._previous.items():
            signal.signal(s, prev)
        self._previous.clear()

    def _on_signal(self, signum: int, _frame) -> None:
        sig = signal.Signals(signum)
        if self._received is None:
            self._received = sig
            log.warning(
                "%s received: stopping with a checkpoint at the next agreement step", sig.name
            )
        else:
            log.warning("%s received again: already stopping", sig.name)

    def reason(self) -> str | None:
        """What asked this process to stop, or None."""
        if self._received is not None:
            return f"signal {self._received.name}"
        f = self.stop_file
        if f is not None:
            try:
                fresh = f.stat().st_mtime >= self.since - 1.0  # 1 s: file-system clock skew
            except OSError:  # absent (the usual case) or unreadable
                return None
            if fresh:
                return f"stop file {f}"
        return None

    def consume_file(self) -> None:
        """Remove the stop file after a stop it caused (rank 0, once all ranks agreed)."""
        if self.stop_file is not None:
            self.stop_file.unlink(missing_ok=True)


__all__ = ["StopRequest", "ignore_signals", "parse_signals"]


def agree(
    acc, cfg, step: int, t_start: float, t_last_val: float, stop: StopRequest
) -> tuple[bool, bool, str | None]:
    """``(out of time, validation due by the clock, stop request or None)``, the same on
    every rank (the request as this rank saw it, or "on another rank").

    One process: read every step. Several: every rank must stop (and validate) at the same
    step, and a signal reaches the ranks at different moments, so they agree every
    ``run.agree_every`` steps: one 3-value all-reduce there, and no collective, host sync or
    stop-file lookup on the other steps. A flag raised on any rank holds for all.
    """
    max_min, every_min = cfg.run.max_minutes, cfg.validation.every_minutes
    if acc.num_processes > 1 and step % cfg.run.agree_every != 0:
        return False, False, None
    now = time.time()
    late = max_min is not None and (now - t_start) / 60 >= max_min
    due = every_min is not None and (now - t_last_val) / 60 >= every_min
    asked = stop.reason()
    if acc.num_processes == 1:
        return late, due, asked
    flags = torch.tensor([float(late), float(due), float(asked is not None)], device=acc.device)
    late_all, due_all, stop_all = (acc.reduce(flags, "sum") > 0).tolist()
    return bool(late_all), bool(due_all), (asked or "on another rank") if stop_all else None
