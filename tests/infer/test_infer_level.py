"""Inference level step: streaming loudness == prep's, gain == prep's normalise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infer.level import LoudnessMeter, plan_for_array, plan_gain
from shards import loudness
from tests.infer._inferdata import SR, speech


@pytest.mark.parametrize("seconds", [0.46, 1.0, 3.37])
def test_streaming_meter_equals_block_powers(seconds):
    x = speech(seconds, seed=3)
    rng = np.random.default_rng(0)
    meter = LoudnessMeter(SR)
    i = 0
    while i < len(x):  # irregular block sizes, some shorter than a 100 ms step
        n = int(rng.integers(1, 5000))
        meter.push(x[i : i + n])
        i += n
    ref = loudness.block_powers(x, SR)
    got = meter.powers()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert meter.peak == pytest.approx(float(np.abs(x).max()))
    assert meter.samples == len(x)


def test_gain_equals_prep_normalise():
    x = speech(4.0, seed=1, rms=0.01)  # quiet: positive gain
    plan = plan_for_array(x, SR, -26.0, -1.0)
    out, info = loudness.normalise(x, SR, -26.0, -1.0)
    assert plan.gain_db == pytest.approx(info.gain_db, abs=1e-4)
    assert plan.loudness_lufs == pytest.approx(info.loudness_before, abs=1e-9)
    assert loudness.integrated_loudness(x * plan.gain, SR) == pytest.approx(-26.0, abs=0.01)


def test_peak_guard_applies_as_in_prep():
    x = speech(2.0, seed=2, rms=0.01)
    x[1000] = 0.9  # a click: 26 dB gain would push it far above -1 dBFS
    plan = plan_for_array(x, SR, -16.0, -1.0)
    _, info = loudness.normalise(x, SR, -16.0, -1.0)
    assert plan.peak_guard and info.peak_guard
    assert plan.gain_db == pytest.approx(info.gain_db, abs=1e-4)
    assert 0.9 * plan.gain <= loudness.db_to_gain(-1.0) * (1 + 1e-6)


def test_silence_and_too_short_get_zero_gain():
    for x in (np.zeros(SR, np.float32), speech(0.2)):
        plan = plan_for_array(x, SR, -26.0, -1.0)
        assert plan.gain_db == 0.0 and math.isinf(plan.loudness_lufs)
    assert plan_gain(np.zeros(0), 0.0, -26.0, -1.0).gain_db == 0.0
