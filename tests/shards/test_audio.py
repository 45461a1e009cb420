"""The conversion path: read any supported file, downmix, remove DC, resample, in blocks."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from shards import audio, synth


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def test_downmix_is_channel_mean_for_int_and_float():
    rng = np.random.default_rng(0)
    f = rng.uniform(-0.9, 0.9, (1000, 3)).astype(np.float32)
    np.testing.assert_allclose(audio.downmix(f), f.mean(axis=1), atol=1e-7)
    i16 = (f * 32767).astype(np.int16)
    np.testing.assert_allclose(audio.downmix(i16), i16.mean(axis=1) / 32768, atol=1e-7)
    i32 = i16.astype(np.int32) << 16  # how libsndfile hands out 16/24-bit PCM as int32
    np.testing.assert_allclose(audio.downmix(i32), audio.downmix(i16), atol=1e-7)
    assert audio.downmix(f[:, 0]).dtype == np.float32


@pytest.mark.parametrize("in_rate", [8_000, 22_050, 44_100, 96_000, 192_000])
def test_output_length_is_exact_and_tone_preserved(write_audio, in_rate):
    x = synth.sine(1.3, in_rate, freq=1000.0, peak=0.5)
    path = write_audio(f"tone_{in_rate}.wav", x, in_rate, "FLOAT")
    y = audio.load_conditioned(path, 16_000, block_seconds=0.25)
    assert y.dtype == np.float32
    assert len(y) == round(len(x) * 16_000 / in_rate)
    assert _dominant_hz(y, 16_000) == pytest.approx(1000.0, abs=2.0)
    mid = y[4000:-4000]  # away from the edges, the level is untouched (< 0.05 dB)
    rms_db = 20 * np.log10(np.sqrt(np.mean(mid.astype(np.float64) ** 2)) / (0.5 / np.sqrt(2)))
    assert abs(rms_db) < 0.05


def test_output_does_not_depend_on_block_size(write_audio):
    x = synth.multichannel(synth.speech_like(6.0, 44_100, seed=1), 2) + 0.05
    path = write_audio("speech.wav", x, 44_100, "PCM_16")
    outs = [audio.load_conditioned(path, 16_000, block_seconds=b) for b in (0.05, 0.7, 10.0)]
    assert len({len(o) for o in outs}) == 1
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], atol=2e-6)  # float32 summation order only


def test_dc_offset_removed_without_start_thump(write_audio):
    speech = synth.speech_like(4.0, 48_000, seed=2, peak=0.4)
    clean = audio.load_conditioned(write_audio("clean.wav", speech, 48_000, "FLOAT"), 16_000)
    offset = audio.load_conditioned(write_audio("dc.wav", speech + 0.3, 48_000, "FLOAT"), 16_000)
    assert abs(float(np.mean(offset[8000:]))) < 1e-3
    # The offset version is the clean one up to a transient decaying within a few
    # hundred ms, and it never starts with a jump to the offset.
    assert np.max(np.abs(offset[8000:] - clean[8000:])) < 2e-3
    assert np.max(np.abs(offset[:800])) < 0.3


def test_six_channels_are_averaged(write_audio):
    rate = 16_000
    t = np.arange(rate * 2) / rate
    chans = np.stack([0.1 * (c + 1) * np.sin(2 * np.pi * 440 * t) for c in range(6)], axis=1)
    y = audio.load_conditioned(write_audio("six.wav", chans, rate, "PCM_24"), rate)
    expected = chans.mean(axis=1)[rate:]
    y = y[rate:]
    # Same rate: no resampling, only the 10 Hz high-pass (level kept, ~2 degrees of phase
    # at 440 Hz, hence correlation rather than sample equality).
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(expected**2)), rel=1e-3)
    assert np.corrcoef(y, expected)[0, 1] > 0.999
    assert audio.probe(write_audio("six2.wav", chans, rate, "PCM_24")).channels == 6


def test_integer_and_float_files_agree(write_audio):
    x = synth.speech_like(2.0, 32_000, seed=3, peak=0.5)
    a = audio.load_conditioned(write_audio("a.wav", x, 32_000, "PCM_16"), 16_000)
    b = audio.load_conditioned(write_audio("b.wav", x, 32_000, "FLOAT"), 16_000)
    c = audio.load_conditioned(write_audio("c.flac", x, 32_000, "PCM_24"), 16_000)
    assert np.max(np.abs(a - b)) < 1e-4  # 16-bit quantisation
    assert np.max(np.abs(c - b)) < 1e-6


@pytest.mark.parametrize("ext,subtype", [(".ogg", "VORBIS"), (".mp3", "MPEG_LAYER_III")])
def test_compressed_formats_read(write_audio, ext, subtype):
    x = synth.multichannel(synth.speech_like(3.0, 44_100, seed=4, peak=0.5), 2)
    path = write_audio("c" + ext, x, 44_100, subtype)
    y = audio.load_conditioned(path, 16_000)
    assert abs(len(y) - 3.0 * 16_000) <= 0.05 * 16_000  # codec padding at most
    assert 0.2 < np.max(np.abs(y)) < 1.0


def test_long_file_streams_in_bounded_blocks(tmp_path):
    path = synth.write_long_wav(tmp_path / "long.wav", hours=0.05, rate=48_000, channels=2)
    info = audio.probe(path)
    decoded_bytes = info.frames * info.channels * 4  # the whole file as float32: 69 MB
    tracemalloc.start()
    total, biggest = 0, 0
    try:
        for block in audio.stream_conditioned(path, 16_000, block_seconds=2.0):
            total += len(block)
            biggest = max(biggest, len(block))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == round(info.frames * 16_000 / 48_000)
    assert biggest <= 2.0 * 16_000 + 1024  # one block, plus what the resampler held back
    assert peak < decoded_bytes / 10  # a few blocks, not the file


def test_bad_files_raise_errors_naming_the_file(tmp_path, write_audio):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    no_frames = write_audio("noframes.wav", np.zeros((0, 1), np.float32), 16_000)
    low_rate = write_audio("low.wav", np.zeros(4000, np.float32), 4_000)
    other = tmp_path / "notes.aiff"
    sf.write(other, np.zeros(1000), 16_000, format="AIFF")
    cases = [
        (corrupt, audio.UnreadableAudioError),
        (empty, audio.EmptyAudioError),
        (no_frames, audio.EmptyAudioError),
        (low_rate, audio.UnsupportedAudioError),
        (other, audio.UnsupportedAudioError),
    ]
    for path, err in cases:
        with pytest.raises(err) as e:
            audio.probe(path)
        assert str(path) in str(e.value)


def test_nan_in_float_file_is_rejected_with_its_time(write_audio):
    x = synth.speech_like(3.0, 16_000, seed=5)
    x[int(2.5 * 16_000)] = np.nan
    path = write_audio("nan.wav", x, 16_000, "FLOAT")
    with pytest.raises(audio.NonFiniteAudioError, match=r"nan\.wav: NaN or Inf sample at 2\.500 s"):
        list(audio.stream_conditioned(path, 16_000, block_seconds=1.0))


def test_prefetched_keeps_order_values_and_errors(write_audio):
    path = write_audio("p.wav", synth.speech_like(5.0, 44_100, seed=6), 44_100, "PCM_16")
    direct = list(audio.stream_conditioned(path, 16_000, block_seconds=0.3))
    ahead = list(audio.prefetched(audio.stream_conditioned(path, 16_000, block_seconds=0.3)))
    assert len(direct) == len(ahead) > 10
    for a, b in zip(direct, ahead, strict=True):
        np.testing.assert_array_equal(a, b)

    def failing():
        yield np.zeros(3, np.float32)
        raise audio.UnreadableAudioError("x.wav", "decoding failed")

    it = audio.prefetched(failing())
    assert len(next(it)) == 3
    with pytest.raises(audio.UnreadableAudioError, match="x.wav: decoding failed"):
        next(it)
    # Abandoning the stream early stops the background thread.
    it = audio.prefetched(audio.stream_conditioned(path, 16_000, block_seconds=0.1))
    next(it)
    it.close()
    assert not any(t.name == "audio-prefetch" for t in threading.enumerate())
