"""Decoded audio at the input's rate and length (and the model's, on request)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import soundfile as sf
import soxr

from infer import cli
from infer.api import TeluCodec
from infer.codefile import CodeFileError
from infer.restore import OutputResampler
from shards import audio, loudness
from tests.infer._inferdata import SR, speech


@pytest.fixture(scope="module")
def tc(tiny_export):
    return TeluCodec.load(tiny_export, "cpu", block_seconds=1.0)


@pytest.mark.parametrize("rate,channels", [(44100, 1), (48000, 2), (22050, 1)])
def test_file_round_trips_at_its_own_rate_and_length(tmp_path, tc, rate, channels):
    x = soxr.resample(speech(2.3, seed=3), SR, rate)[: round(2.3 * rate) - 7]  # odd length
    src = tmp_path / "in.flac"
    sf.write(src, np.stack([x] * channels, 1) if channels > 1 else x, rate, subtype="PCM_24")
    cf = tc.encode_file(src, tmp_path / "a.tcc")
    assert (cf.orig_rate, cf.orig_frames, cf.orig_channels) == (rate, len(x), channels)
    tc.decode_file(tmp_path / "a.tcc", tmp_path / "out.wav")
    y, got_rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert got_rate == rate and y.shape == (len(x),)  # exactly the input's length
    # the model-rate decoding, resampled by soxr (prep's quality) and cut to length
    ym = tc.decode(cf, rate="model")
    assert len(ym) == cf.n_samples
    ref = soxr.resample(ym, SR, rate, quality=audio.DEFAULT_RESAMPLE_QUALITY)
    n = min(len(ref), len(y)) - 3
    np.testing.assert_allclose(y[:n], ref[:n], atol=1e-5)


def test_resampling_keeps_speech_loudness():
    x = speech(3.0, seed=6)
    for rate in (22050, 44100, 48000):
        rs = OutputResampler(SR, rate, round(len(x) * rate / SR))
        y = np.concatenate([rs.process(x), rs.flush()])
        assert loudness.integrated_loudness(y, rate) == pytest.approx(
            loudness.integrated_loudness(x, SR), abs=0.05
        )


def test_rate_options(tc):
    x = soxr.resample(speech(1.5, seed=4), SR, 44100)
    cf = tc.encode(x, 44100)
    assert len(tc.decode(cf)) == len(x)  # default: the input's rate and length
    assert len(tc.decode(cf, rate="model")) == cf.n_samples == round(len(x) * SR / 44100)
    assert len(tc.decode(cf, rate=8000)) == round(cf.n_samples * 8000 / SR)
    with pytest.raises(ValueError, match="rate: 1000 Hz is outside"):
        tc.decode(cf, rate=1000)


@pytest.mark.parametrize("n_out_shift", [-2, 0, 3])
def test_resampler_gives_exactly_n_out_whatever_the_blocks(n_out_shift):
    x = speech(1.0, seed=5)
    n_out = round(len(x) * 44100 / SR) + n_out_shift
    whole = OutputResampler(SR, 44100, n_out)
    ref = np.concatenate([whole.process(x), whole.flush()])
    rs = OutputResampler(SR, 44100, n_out)
    parts = [rs.process(b) for b in np.array_split(x, 7)] + [rs.flush()]
    got = np.concatenate(parts)
    assert len(got) == len(ref) == n_out
    np.testing.assert_allclose(got, ref, atol=1e-6)
    np.testing.assert_allclose(ref[: n_out - 3], soxr.resample(x, SR, 44100)[: n_out - 3],
                               atol=1e-4)  # fmt: skip


def test_cli_many_files_rate_and_a_bad_input(tmp_path, tiny_export, capsys):
    srcs = []
    for i, rate in enumerate((SR, 44100)):
        srcs.append(tmp_path / f"s{i}.wav")
        sf.write(srcs[-1], soxr.resample(speech(1.2, seed=i), SR, rate), rate)
    (tmp_path / "broken.flac").write_bytes(b"fLaC nonsense")
    model = ["--model", str(tiny_export), "--device", "cpu", "--batch-windows", "3"]
    inputs = [str(srcs[0]), str(tmp_path / "broken.flac"), str(srcs[1])]
    assert cli.main(["encode", *inputs, "--out-dir", str(tmp_path / "c"), *model]) == 2
    out = capsys.readouterr()
    assert "broken.flac" in out.err and "s0.tcc" in out.out and "s1.tcc" in out.out
    tccs = [str(tmp_path / "c" / "s0.tcc"), str(tmp_path / "c" / "s1.tcc")]
    assert cli.main(["decode", *tccs, "--out-dir", str(tmp_path / "w"), *model]) == 0
    for i, rate in enumerate((SR, 44100)):
        info = sf.info(tmp_path / "w" / f"s{i}.wav")
        assert (info.samplerate, info.frames) == (rate, sf.info(srcs[i]).frames)
    args = ["decode", tccs[1], str(tmp_path / "m.flac"), "--rate", "model", *model]
    assert cli.main(args) == 0
    assert sf.info(tmp_path / "m.flac").samplerate == SR


@pytest.mark.parametrize("extra", [-9, -8, -7, -1, 0, 1])
def test_every_sample_is_decoded_near_a_frame_boundary(tmp_path, tc, extra):
    """DAC's decoder makes ``F * hop - tail`` samples from ``F`` frames (tail 8 here), so an
    input ending within ``tail`` samples of a frame boundary is encoded with one more frame:
    the decoded length is the input's, and its last samples are decoded audio, not padding."""
    hop, tail = tc.hop, tc.tail
    assert tail == 8
    n = 40 * hop + extra
    long = speech(3.0, seed=8)
    x = long[:n]
    cf = tc.encode(x, SR)
    assert cf.n_frames == -(-(n + tail) // hop)
    y = tc.decode(cf)
    assert y.shape == (n,)
    assert np.abs(y[-tail:]).max() > 1e-4  # decoded, not zero-filled
    # the streamed file path agrees with the in-memory one
    sf.write(tmp_path / "x.wav", x, SR, subtype="FLOAT")
    tc.encode_file(tmp_path / "x.wav", tmp_path / "x.tcc")
    tc.decode_file(tmp_path / "x.tcc", tmp_path / "y.wav")
    yf, _ = sf.read(tmp_path / "y.wav", dtype="float32")
    np.testing.assert_allclose(yf, y, atol=1e-6)


def test_a_header_promising_samples_beyond_the_frames(tc):
    """Beyond ``F * hop``: corrupt, refused. Between ``F * hop - tail`` and ``F * hop`` (a
    code file written before the decoder took DAC's length): decoded, the missing end as
    silence, with a warning that says so."""
    cf = tc.encode(speech(0.5, seed=2), SR)
    have = cf.n_frames * tc.hop - tc.tail
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the most the frames make: no warning
        assert len(tc.decode(dataclasses.replace(cf, n_samples=have, orig_frames=have))) == have
    with pytest.warns(UserWarning, match=rf"last 3 samples decode as silence: its {cf.n_frames} "):
        y = tc.decode(dataclasses.replace(cf, n_samples=have + 3, orig_frames=have + 3))
    assert len(y) == have + 3 and not y[-3:].any() and y[-4] != 0
    full = cf.n_frames * tc.hop
    with pytest.raises(CodeFileError, match=rf"corrupt: {full + 1} samples in {cf.n_frames} "):
        tc.decode(dataclasses.replace(cf, n_samples=full + 1, orig_frames=full + 1))


def test_no_frames_decode_to_no_samples(tc):
    assert tc.codec.decoded_length(0) == 0 and tc.codec.frames_for(0) == 0
