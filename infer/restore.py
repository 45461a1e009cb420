"""Decoded audio back to the input's level, length and sample rate, streaming.

The codec decodes at its own rate (16 kHz for the presets); a user who encoded a 44.1 kHz
file expects a 44.1 kHz file of the same length back. This uses the resampler prep uses
(:func:`shards.audio.resample_stream`: soxr, streaming, prep's quality) the other way round. Only the resampling step is shared: prep's DC removal and downmix have no
inverse and are not applied to decoded audio.

Length rule: the output is exactly ``n_out`` samples (the input's length at its rate, from
the code file header); soxr's own count differs from that by at most a sample or two
(rounding of two rate conversions), so the tail is trimmed or zero-padded by that much.
"""

from __future__ import annotations

import numpy as np

from infer.codefile import CodeFile
from shards.audio import resample_stream
from shards.loudness import db_to_gain


class OutputResampler:
    """Streaming mono float32 ``in_rate`` -> ``out_rate`` Hz, exactly ``n_out`` samples.

    :meth:`process` consecutive blocks, then :meth:`flush` once.
    """

    def __init__(self, in_rate: int, out_rate: int, n_out: int):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.n_out = int(n_out)
        self.emitted = 0
        self._rs = resample_stream(in_rate, out_rate)

    def _emit(self, y: np.ndarray) -> np.ndarray:
        y = y[: max(0, self.n_out - self.emitted)]
        self.emitted += len(y)
        return y

    def process(self, block: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(block, np.float32)
        return self._emit(x if self._rs is None else self._rs.resample_chunk(x))

    def flush(self) -> np.ndarray:
        tail = np.zeros(0, np.float32)
        if self._rs is not None:
            tail = self._rs.resample_chunk(tail, last=True)
        tail = self._emit(tail)
        missing = self.n_out - self.emitted
        if missing > 0:
            self.emitted += missing
            tail = np.concatenate([tail, np.zeros(missing, np.float32)])
        return tail


def output_length(code: CodeFile, rate: int) -> int:
    """Samples of ``code`` decoded at ``rate`` Hz: the input's exact length at its own rate,
    ``n_samples`` at the model rate, else ``round(n_samples * rate / model rate)``."""
    if rate == code.orig_rate:
        return code.orig_frames
    if rate == code.sample_rate:
        return code.n_samples
    return round(code.n_samples * rate / code.sample_rate)


class Restorer:
    """Model-rate decoder output of one code file -> audio at the input's loudness and at
    ``rate`` Hz: crops the last frame's padding (to ``n_samples``), divides the encode gain
    out, resamples. :meth:`push` the decoded blocks in order, then :meth:`finish` once."""

    def __init__(self, code: CodeFile, rate: int):
        self.inv = np.float32(1.0 / db_to_gain(code.gain_db))  # the inverse of the encode gain
        self.left = code.n_samples
        self.resampler = OutputResampler(code.sample_rate, rate, output_length(code, rate))

    def push(self, y: np.ndarray) -> np.ndarray:
        y = y[: self.left] * self.inv
        self.left -= len(y)
        return self.resampler.process(y)

    def finish(self) -> np.ndarray:
        return self.resampler.flush()
