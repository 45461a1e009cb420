"""Opus reference: delay compensation and a round trip on a short clip."""

from __future__ import annotations

import numpy as np
import pytest

from codec.metrics import mel_distance, snr_db
from infer import opus
from tests.infer._inferdata import SR, speech


def test_align_finds_known_shift():
    x = speech(1.0, seed=1)
    for lag in (-37, 0, 52):
        est = np.roll(x, lag)
        out, found = opus.align(x, est, 200)
        assert found == lag
        core = slice(200, -200)
        np.testing.assert_allclose(out[core], x[core])


@pytest.mark.skipif(not opus.available(), reason="opusenc/opusdec not installed")
def test_opus_round_trip_short_clip():
    import torch

    x = speech(2.0, seed=2)
    ref = torch.from_numpy(x)[None]
    mel = {}
    for kbps in (6, 24):
        y, info = opus.roundtrip(x, SR, kbps)
        assert y.shape == x.shape and y.dtype == np.float32
        assert abs(info["lag"]) <= 2  # opusdec already removed the pre-skip
        assert 0.5 * kbps < info["actual_kbps"] < 2 * kbps + 2
        # delay-compensated: the aligned output matches better than any shifted copy
        snr = {s: snr_db(ref, torch.from_numpy(np.roll(y, s))[None]).item() for s in range(-3, 4)}
        assert max(snr, key=snr.get) == 0 and snr[0] > 3
        mel[kbps] = mel_distance(ref, torch.from_numpy(y)[None], SR).item()
    assert mel[24] < mel[6]
