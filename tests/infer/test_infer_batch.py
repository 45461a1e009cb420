"""Batched windows == unbatched: one long signal, many files, and the padding rule."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from infer import batch
from infer.api import TeluCodec
from tests.infer._inferdata import SR, decode_stream, encode_stream, speech


@pytest.mark.parametrize("batch_windows", [2, 5, 64])
def test_batched_encode_and_decode_equal_unbatched(codec, batch_windows):
    x = speech(3.03, seed=5)  # 152 frames: the last window is short, the first too
    one = np.concatenate(list(encode_stream(codec, [x], 4, 25)), axis=1)
    many = np.concatenate(list(encode_stream(codec, [x], 4, 25, batch_windows=batch_windows)), 1)
    np.testing.assert_array_equal(many, one)
    y1 = np.concatenate(list(decode_stream(codec, one, 25)))
    yb = np.concatenate(list(decode_stream(codec, one, 25, batch_windows=batch_windows)))
    assert yb.shape == y1.shape == (152 * 320 - codec.tail,) == (codec.decoded_length(152),)
    assert np.abs(yb - y1).max() < 1e-5


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_valid_length_rule_makes_padding_exact_and_is_needed(codec, part):
    """Item 1 is 20 frames padded to 30: under :func:`batch.valid_lengths` its result is
    what it gives alone; plain zero padding is not (so the rule is needed)."""
    net = getattr(codec, part)
    per = codec.hop_length if part == "encoder" else 1
    channels = 1 if part == "encoder" else codec.latent_dim
    torch.manual_seed(1)
    x = torch.randn(2, channels, 30 * per) * 0.1
    x[1, :, 20 * per :] = 0
    with torch.inference_mode():
        alone = net(x[1:, :, : 20 * per])[0]
        with batch.valid_lengths(net, [30, 20], 30):
            masked = net(x)
        plain = net(x)
    n = alone.shape[-1]
    if part == "encoder":
        assert masked.shape[-1] == n * 30 // 20
    else:  # DAC's decoder: F frames make F * hop - tail samples
        assert (n, masked.shape[-1]) == (codec.decoded_length(20), codec.decoded_length(30))
    torch.testing.assert_close(masked[1, :, :n], alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(masked[0], plain[0])  # the full-length item is untouched
    assert (plain[1, :, :n] - alone).abs().max() > 1e-3


def test_many_files_share_batches_and_equal_one_by_one(tmp_path, tiny_export, monkeypatch):
    paths = []
    for i, (sec, rate) in enumerate([(2.2, SR), (0.3, 44100), (1.7, 48000)]):
        x = soxr.resample(speech(sec, seed=10 + i, rms=0.02 * (i + 1)), SR, rate)
        paths.append(tmp_path / f"f{i}.wav")
        sf.write(paths[-1], x, rate)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    paths.insert(1, tmp_path / "bad.wav")
    one = TeluCodec.load(tiny_export, "cpu", block_seconds=0.5, batch_windows=1)
    many = TeluCodec.load(tiny_export, "cpu", block_seconds=0.5, batch_windows=4)
    seen = []  # the files in each forward pass
    run_batch = batch.encode_batch
    monkeypatch.setattr(batch, "encode_batch", lambda c, b, n: seen.append({w.key for w in b})
                        or run_batch(c, b, n))  # fmt: skip
    results = list(many.encode_files(paths, tmp_path / "codes"))
    monkeypatch.undo()
    assert max(len(b) for b in seen) > 1  # windows of several files shared a batch
    assert [r.source for r in results] == paths
    assert results[1].error is not None and "bad.wav" in str(results[1].error)
    for p, r in zip(paths, results, strict=True):
        if p.name == "bad.wav":
            continue
        ref = one.encode_file(p)
        np.testing.assert_array_equal(r.code.codes, ref.codes)
        assert r.output.exists() and (r.code.orig_rate, r.code.gain_db) == (
            ref.orig_rate,
            ref.gain_db,
        )
    tccs = [r.output for r in results if r.error is None]
    decoded = list(many.decode_files(tccs, tmp_path / "wav", rate="model"))
    for r in decoded:
        y, rate = sf.read(r.output, dtype="float32")
        ref = one.decode(r.code, rate="model")
        assert rate == SR and y.shape == ref.shape
        assert np.abs(y - ref).max() < 1e-5
