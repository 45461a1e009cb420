"""Fixed loudness target + peak guard: never clip, never peak-normalise, keep the waveform."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest

from shards import loudness, synth

RATE = 16_000


@pytest.mark.parametrize("rate", [8_000, 16_000, 44_100])
@pytest.mark.parametrize("seconds", [0.4, 0.95, 3.3, 10.0])
def test_matches_pyloudnorm(rate, seconds):
    x = synth.speech_like(seconds, rate, seed=int(seconds * 10), peak=0.3)
    ref = pyloudnorm.Meter(rate).integrated_loudness(x.astype(np.float64))
    assert loudness.integrated_loudness(x, rate) == pytest.approx(ref, abs=1e-6)


def test_silence_and_short_input():
    assert loudness.integrated_loudness(np.zeros(RATE, np.float32), RATE) == -math.inf
    with pytest.raises(ValueError, match="silence"):
        loudness.normalise(np.zeros(RATE, np.float32), RATE, -26.0)
    with pytest.raises(ValueError, match="shorter than one 0.4 s"):
        loudness.integrated_loudness(np.ones(RATE // 4, np.float32), RATE)


@pytest.mark.parametrize("peak", [0.003, 0.05, 0.5, 1.0129])
def test_normalise_hits_target_and_only_scales(peak):
    x = synth.speech_like(10.0, RATE, seed=7, peak=peak)
    out, info = loudness.normalise(x, RATE, -26.0, -1.0)
    assert not info.peak_guard
    assert loudness.integrated_loudness(out, RATE) == pytest.approx(-26.0, abs=0.01)
    assert info.loudness_after == pytest.approx(loudness.integrated_loudness(out, RATE), abs=1e-4)
    g = np.float32(10 ** (info.gain_db / 20))
    np.testing.assert_allclose(out, x * g, rtol=1e-6, atol=0)  # one gain, waveform intact
    assert info.peak_after < 10 ** (-1 / 20)


def test_source_peaking_at_1_0129_comes_out_below_full_scale_with_waveform_intact():
    # Loud speech whose resampled peak overshoots full scale, as in the user's files.
    x = synth.speech_like(10.0, RATE, seed=11, peak=1.0129)
    assert np.max(np.abs(x)) == pytest.approx(1.0129, abs=1e-6)
    for target in (-16.0, -26.0):  # -16: so loud that the guard must act
        out, info = loudness.normalise(x, RATE, target, -1.0)
        ceiling = 10 ** (-1 / 20)
        assert np.max(np.abs(out)) <= ceiling < 1.0
        ratio = out[np.abs(x) > 1e-3] / x[np.abs(x) > 1e-3]
        assert np.ptp(ratio) <= 1e-6 * np.max(np.abs(ratio))  # a single gain everywhere
        if info.peak_guard:
            assert info.peak_after == pytest.approx(ceiling, rel=1e-6)
            assert info.loudness_after < target - 0.5
        else:
            assert info.loudness_after == pytest.approx(target, abs=0.01)


def test_guard_acts_only_when_needed_and_lowers_gain_to_the_ceiling():
    x = synth.speech_like(10.0, RATE, seed=12, peak=0.2)
    x[RATE * 5] = 0.9  # one click: peak-to-loudness ratio far above the 25 dB of headroom
    out, info = loudness.normalise(x, RATE, -26.0, -1.0)
    assert info.peak_guard
    ceiling = np.float32(10 ** (-1 / 20))
    assert np.max(np.abs(out)) <= ceiling
    assert np.max(np.abs(out)) == pytest.approx(float(ceiling), rel=1e-6)
    assert info.gain_db == pytest.approx(20 * np.log10(ceiling / 0.9), abs=1e-5)
    assert info.loudness_after == pytest.approx(info.loudness_before + info.gain_db, abs=0.05)
    # Without the click the same speech is simply brought to target.
    x[RATE * 5] = 0.0
    _, info2 = loudness.normalise(x, RATE, -26.0, -1.0)
    assert not info2.peak_guard


def test_gating_refinement_keeps_quiet_pauses_from_biasing_the_level():
    # Speech with long near-silent pauses: blocks below -70 LUFS before the gain rise
    # above it after, so "before + gain" alone would miss the target.
    x = synth.speech_like(10.0, RATE, seed=13, peak=0.01, pause_share=0.5)
    out, info = loudness.normalise(x, RATE, -26.0)
    assert pyloudnorm.Meter(RATE).integrated_loudness(out.astype(np.float64)) == pytest.approx(
        -26.0, abs=0.01
    )
