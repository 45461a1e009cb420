"""The generated speech stand-in behaves like a recording where the tests measure it."""

from __future__ import annotations

import numpy as np
import pytest

from shards import synth
from shards.audit import DC_WARN


@pytest.mark.parametrize("rate", [8_000, 16_000, 48_000])
def test_speech_like_has_no_dc_and_the_asked_peak(rate):
    """A microphone passes no DC, so neither does the stand-in: a DC component would be
    signal to SNR but not to SI-SNR (which removes the mean) and an audit DC warning for
    generated shards. Before the voiced source was high-passed its mean was 0.3-0.5x its RMS."""
    for seed in range(3):
        x = synth.speech_like(3.0, rate, seed=seed, peak=0.9).astype(np.float64)
        rms = np.sqrt(np.mean(x**2))
        assert abs(x.mean()) < 0.01 * rms and abs(x.mean()) < DC_WARN, (seed, x.mean(), rms)
        assert np.isclose(np.abs(x).max(), 0.9, rtol=1e-6)
    assert np.array_equal(
        synth.speech_like(1.0, rate, seed=1), synth.speech_like(1.0, rate, seed=1)
    )
