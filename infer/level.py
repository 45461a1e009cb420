"""The level step of inference: the prep command's loudness target, for a whole recording.

Prep scales each stored chunk by one gain to the manifest's loudness target (BS.1770,
:func:`shards.loudness.normalise`, peak guard at the manifest's ceiling). Inference applies
the same rule with the same function to the whole input, so the model hears speech at the
level it was trained at; the gain goes into the code file and decoding divides it out,
restoring the input's loudness.

Why one gain per file, not one per 10 s chunk like prep: a gain that steps at chunk
boundaries is a time-varying level change (an AGC) that the decoder's output would carry
across the step; one constant gain keeps the recording's own dynamics and is exactly
invertible.

For hours-long files the loudness is measured while streaming (:class:`LoudnessMeter`):
the same K-weighting filter, carried across blocks, and the same 400 ms / 75 % overlap
gating blocks as :func:`shards.loudness.block_powers`, from 100 ms partial sums, so memory
stays a few floats per second of audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.signal

from shards import loudness

_STEP_SECONDS = loudness.BLOCK_SECONDS / 4  # 75 % overlap: a new 400 ms block every 100 ms


@dataclass(frozen=True)
class LevelPlan:
    """The gain inference applies before encoding. ``loudness_lufs`` is the input's BS.1770
    integrated loudness (``-inf`` when not measurable: digital silence or < 0.4 s, in which
    case the gain is 0 dB); ``gain_db`` dB; ``peak`` linear sample peak of the input;
    ``peak_guard``: the gain was lowered to keep the peak at the ceiling."""

    loudness_lufs: float
    gain_db: float
    peak: float
    peak_guard: bool

    @property
    def gain(self) -> np.float32:
        """The linear gain as the float32 the samples are multiplied by."""
        return np.float32(loudness.db_to_gain(self.gain_db))


class LoudnessMeter:
    """Streaming BS.1770 block powers of mono audio at ``rate`` Hz.

    :meth:`push` consecutive blocks, then :meth:`powers` gives what
    :func:`shards.loudness.block_powers` gives for the concatenation (to float rounding).
    """

    def __init__(self, rate: int):
        step = _STEP_SECONDS * rate
        if abs(step - round(step)) > 1e-9:
            raise ValueError(f"rate: {rate} Hz does not give whole 100 ms steps")
        self.rate = int(rate)
        self.step = int(round(step))
        self._sos = loudness._k_weighting_sos(self.rate)
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._sums: list[float] = []  # energy of each complete 100 ms step
        self._partial = 0.0  # energy of the current incomplete step
        self._in_step = 0  # samples in the current incomplete step
        self.samples = 0
        self.peak = 0.0

    def push(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"expected mono audio (samples,), got shape {x.shape}")
        if not len(x):
            return
        self.samples += len(x)
        self.peak = max(self.peak, float(np.max(np.abs(x))))
        y, self._zi = scipy.signal.sosfilt(self._sos, x.astype(np.float64), zi=self._zi)
        e = y * y
        i = 0
        if self._in_step:
            take = min(self.step - self._in_step, len(e))
            self._partial += float(e[:take].sum())
            self._in_step += take
            i = take
            if self._in_step == self.step:
                self._sums.append(self._partial)
                self._partial, self._in_step = 0.0, 0
        full = (len(e) - i) // self.step
        if full:
            self._sums.extend(e[i : i + full * self.step].reshape(full, self.step).sum(1).tolist())
            i += full * self.step
        if i < len(e):
            self._partial += float(e[i:].sum())
            self._in_step += len(e) - i

    def powers(self) -> np.ndarray:
        """Mean-square K-weighted power of each gating block, (blocks,); empty if < 0.4 s."""
        block = round(loudness.BLOCK_SECONDS * self.rate)
        if self.samples < block:
            return np.zeros(0)
        duration = self.samples / self.rate
        n_blocks = int(np.round((duration - loudness.BLOCK_SECONDS) / _STEP_SECONDS)) + 1
        parts = np.array(self._sums + [self._partial])
        csum = np.concatenate([[0.0], np.cumsum(parts)])
        j = np.arange(n_blocks)
        # A block ending past the last complete step ends at the end of the file (as in
        # block_powers, whose last block is clipped to the signal length).
        hi = np.minimum(j + 4, len(parts))
        return (csum[hi] - csum[j]) / block


def plan_gain(
    powers: np.ndarray, peak: float, target_lufs: float, ceiling_dbfs: float
) -> LevelPlan:
    """The gain prep's :func:`shards.loudness.normalise` gives a signal with these block
    ``powers`` and sample ``peak`` (the gain depends on nothing else, so normalise is
    called on the peak sample alone with the precomputed powers: the same code decides)."""
    before = loudness.gated_loudness(powers) if len(powers) else -math.inf
    if not math.isfinite(before):
        return LevelPlan(loudness_lufs=-math.inf, gain_db=0.0, peak=peak, peak_guard=False)
    _, info = loudness.normalise(
        np.array([peak], np.float32), 1, target_lufs, ceiling_dbfs, powers=powers
    )
    return LevelPlan(
        loudness_lufs=before, gain_db=info.gain_db, peak=peak, peak_guard=info.peak_guard
    )


def plan_for_array(x: np.ndarray, rate: int, target_lufs: float, ceiling_dbfs: float) -> LevelPlan:
    """:func:`plan_gain` for a whole mono array (block powers by the prep function itself)."""
    x = np.asarray(x, np.float32)
    powers = (
        loudness.block_powers(x, rate) if len(x) >= loudness.BLOCK_SECONDS * rate else np.zeros(0)
    )
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return plan_gain(powers, peak, target_lufs, ceiling_dbfs)
