"""Progress output that suits where it goes: a live bar on a terminal, plain lines in a log.

A tqdm bar redraws itself with carriage returns many times a second. On a terminal that is
one line that changes; in a log file (SLURM, CI, ``| tee``) every redraw is kept, and a prep
run of 119 short clips wrote about 130 of them in 5 s. So :func:`progress` gives a tqdm bar
only when the stream is a terminal, and otherwise a :class:`LineProgress`: one plain line
(ending in a newline, no ``\\r``) at most every ``interval_s`` seconds, and one at the end.

Both offer what the callers use: ``update(n)``, the ``n`` attribute, ``refresh()`` and
``close()``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

from tqdm import tqdm

LOG_INTERVAL_S = 10.0  # seconds between lines when the output is not a terminal


class LineProgress:
    """Progress as plain lines: ``"<desc>: 42% 0.12/0.29 h, 00:31 elapsed"``.

    total: the amount that means done (same unit as ``update``). unit: its name. fmt: how
    amounts are printed (``"{:.2f}"`` for hours, ``"{:.0f}"`` for counts). A line is
    written when ``interval_s`` has passed since the last one, and by ``close``.
    clock: seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        total: float | None,
        desc: str,
        unit: str,
        file: IO[str],
        *,
        fmt: str = "{:.0f}",
        interval_s: float = LOG_INTERVAL_S,
        disable: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.fmt, self.interval_s, self.disable, self.clock = fmt, interval_s, disable, clock
        self.n = 0.0
        self._start = self._last = clock()
        self._closed = False

    def update(self, n: float = 1) -> None:
        self.n += n
        self.refresh()

    def refresh(self) -> None:
        """Write a line if ``interval_s`` has passed since the last one."""
        if self.disable or self._closed:
            return
        now = self.clock()
        if now - self._last >= self.interval_s:
            self._emit(now)

    def close(self) -> None:
        if not self.disable and not self._closed:
            self._emit(self.clock())
        self._closed = True

    def line(self, now: float) -> str:
        done = self.fmt.format(self.n)
        if self.total:
            pct = f"{100 * min(self.n / self.total, 1.0):3.0f}% "
            amount = f"{done}/{self.fmt.format(self.total)} {self.unit}"
        else:
            pct, amount = "", f"{done} {self.unit}"
        elapsed = int(now - self._start)
        return f"{self.desc}: {pct}{amount}, {elapsed // 60:02d}:{elapsed % 60:02d} elapsed"

    def _emit(self, now: float) -> None:
        self._last = now
        self.file.write(self.line(now) + "\n")
        self.file.flush()


def progress(
    total: float | None,
    desc: str,
    unit: str,
    *,
    disable: bool = False,
    fmt: str = "{:.0f}",
    file: IO[str] | None = None,
    interval_s: float = LOG_INTERVAL_S,
    **tqdm_kwargs,
) -> tqdm | LineProgress:
    """A tqdm bar on a terminal, else a :class:`LineProgress` (see the module docstring).

    file: where to write (default ``sys.stderr``). tqdm_kwargs (e.g. ``bar_format``) only
    apply to the bar."""
    file = file if file is not None else sys.stderr
    isatty = getattr(file, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=file, **tqdm_kwargs)
    return LineProgress(total, desc, unit, file, fmt=fmt, interval_s=interval_s, disable=disable)
