"""Cut a stream of conditioned audio blocks into fixed-length chunks, region by region.

The cutter works in output samples. Regions (from :mod:`shards.split`) are given in
source seconds and turned into sample indices with ``round(t * rate)``, so chunk
boundaries never drift however long the recording. Every output sample ends up in exactly
one :class:`Piece`: a chunk of a split (full length, or a final partial chunk of at least
``min_samples``), a ``short_tail`` (a final partial chunk shorter than that) or a
``split_gap``. That is what makes the report's "every second accounted for" exact.

Memory: at most one chunk plus one input block is buffered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from shards.split import Region

CHUNK, SHORT_TAIL, SPLIT_GAP = "chunk", "short_tail", "split_gap"


@dataclass
class Piece:
    """``kind``: CHUNK, SHORT_TAIL or SPLIT_GAP. ``split``: train/val (None for gaps).
    ``index``: running chunk number within the recording (CHUNK only, -1 otherwise).
    ``start``/``end``: output sample indices [start, end). ``audio``: the samples for
    CHUNK (None otherwise). ``final``: the piece ends at the end of the recording."""

    kind: str
    split: str | None
    index: int
    start: int
    end: int
    audio: np.ndarray | None
    final: bool = False


class _Buffer:
    """FIFO of samples with an absolute position, concatenating lazily."""

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.size = 0
        self.pos = 0  # absolute index of the first buffered sample

    def push(self, x: np.ndarray) -> None:
        if len(x):
            self.parts.append(x)
            self.size += len(x)

    def take(self, n: int, keep: bool = True) -> np.ndarray | None:
        """Remove the first ``n`` samples; return them if ``keep``."""
        data = np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
        out = data[:n].copy() if keep else None
        rest = data[n:]
        self.parts = [rest] if len(rest) else []
        self.size -= n
        self.pos += n
        return out


def cut(
    blocks: Iterable[np.ndarray],
    regions: list[Region],
    rate: int,
    chunk_samples: int,
    min_samples: int,
) -> Iterator[Piece]:
    """Yield the pieces of one recording in time order.

    blocks: consecutive mono blocks at ``rate`` Hz. regions: cover [0, end) in order, the
    last one open-ended. A full chunk is only emitted once a later sample has been seen,
    so a chunk that ends exactly at the end of the recording is marked ``final``.
    """
    bounds = []  # (split, start_idx, end_idx or None)
    for r in regions:
        end = None if r.end_s is None else round(r.end_s * rate)
        bounds.append((r.split, round(r.start_s * rate), end))
    buf = _Buffer()
    index = 0
    ri = 0

    def region_pieces(done: bool) -> Iterator[Piece]:
        nonlocal index, ri
        while ri < len(bounds):
            split, region_start, end = bounds[ri]
            avail_end = buf.pos + buf.size
            # How far this region's audio is available now, and whether all of it is.
            stop = avail_end if end is None else min(end, avail_end)
            reached_end = done or (end is not None and avail_end >= end)
            if split is None:  # gap between train and val: dropped, but accounted for
                if stop > buf.pos:
                    buf.take(stop - buf.pos, keep=False)  # as it arrives: memory stays flat
                if reached_end and stop > region_start:
                    final = done and stop == avail_end
                    yield Piece(SPLIT_GAP, None, -1, region_start, stop, None, final)
            else:
                # Full chunks; one that ends exactly at the available end waits for more
                # audio (or the end of the stream), so we know whether it is the final one.
                while buf.pos + chunk_samples <= stop and (
                    buf.pos + chunk_samples < avail_end or done
                ):
                    start = buf.pos
                    audio = buf.take(chunk_samples)
                    end_idx = start + chunk_samples
                    final = done and end_idx == avail_end
                    yield Piece(CHUNK, split, index, start, end_idx, audio, final)
                    index += 1
                if reached_end and stop > buf.pos:  # the region's last, partial chunk
                    start, n = buf.pos, stop - buf.pos
                    final = done and stop == avail_end
                    if n >= min_samples:
                        yield Piece(CHUNK, split, index, start, stop, buf.take(n), final)
                        index += 1
                    else:
                        buf.take(n, keep=False)
                        yield Piece(SHORT_TAIL, split, -1, start, stop, None, final)
            if not reached_end:
                return  # wait for more audio
            ri += 1

    for block in blocks:
        buf.push(np.asarray(block, dtype=np.float32))
        yield from region_pieces(done=False)
    yield from region_pieces(done=True)
    if buf.size:  # audio past the last region cannot happen (last region is open-ended)
        raise AssertionError(f"{buf.size} samples left after the last region")
