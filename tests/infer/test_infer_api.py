"""API and commands: conversion as prep does it, loudness restore, files, errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from infer import cli
from infer.api import TeluCodec
from infer.codefile import CodeFile, CodeFileError
from shards import audio, loudness
from tests.infer._inferdata import SR, speech


@pytest.fixture(scope="module")
def tc(tiny_export):
    return TeluCodec.load(tiny_export, block_seconds=1.0)


def test_load_folds_weight_norm_and_keeps_outputs(tiny_export, tc):
    from torch.nn.utils import parametrize

    from codec.export_format import load_exported

    assert not any(parametrize.is_parametrized(m) for m in tc.codec.modules())
    ref, _ = load_exported(tiny_export)
    import torch

    x = torch.from_numpy(speech(1.0))[None, None]
    with torch.inference_mode():
        a = ref.decode(ref.encode(x, 4)[0])
        b = tc.codec.decode(tc.codec.encode(x, 4)[0])
    assert torch.allclose(a, b, atol=1e-5)


def test_input_converted_exactly_as_prep(tmp_path, tc):
    x = soxr.resample(speech(2.0, seed=1), SR, 44100)
    stereo = np.stack([x, 0.5 * x], axis=1)
    path = tmp_path / "s.flac"
    sf.write(path, stereo, 44100, subtype="PCM_24")
    file_samples, _ = sf.read(path, dtype="int32")
    np.testing.assert_array_equal(
        tc.condition(file_samples, 44100), audio.load_conditioned(path, SR)
    )
    # the streaming file path and the array path give the same code file
    a = tc.encode_file(path, n_quantizers=3)
    b = tc.encode(file_samples, 44100, n_quantizers=3)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.gain_db == pytest.approx(b.gain_db, abs=1e-4)
    assert a.n_samples == b.n_samples == round(len(x) * SR / 44100)


def test_gain_is_prep_target_and_decode_applies_its_inverse(tc):
    x = speech(3.0, seed=2, rms=0.2)  # loud input: negative gain
    cf = tc.encode(x, SR)
    measured = loudness.integrated_loudness(x, SR)
    assert cf.loudness_lufs == pytest.approx(measured, abs=1e-3)
    assert cf.gain_db == pytest.approx(tc.loudness_target_lufs - measured, abs=1e-3)
    y = tc.decode(cf)
    assert y.shape == x.shape
    # model-independent: the output is the decoder's (training-level) output / gain, so its
    # loudness is the decoder output's loudness minus the stored gain
    raw = tc.decode(CodeFile(**{**cf.__dict__, "gain_db": 0.0}))
    np.testing.assert_allclose(y, raw / loudness.db_to_gain(cf.gain_db), rtol=1e-5, atol=1e-9)
    assert loudness.integrated_loudness(y, SR) == pytest.approx(
        loudness.integrated_loudness(raw, SR) - cf.gain_db, abs=0.01
    )
    # the same speech 20 dB quieter: the model sees the same level, the output is 20 dB down
    cf_q = tc.encode(x * 0.1, SR)
    assert cf_q.gain_db == pytest.approx(cf.gain_db + 20, abs=1e-3)
    assert (cf_q.codes == cf.codes).mean() > 0.99
    y_q = tc.decode(cf_q)
    assert loudness.integrated_loudness(y_q, SR) == pytest.approx(
        loudness.integrated_loudness(y, SR) - 20, abs=0.5
    )


def test_decode_prefix_and_wrong_model(tc):
    cf = tc.encode(speech(1.0), SR, n_quantizers=4)
    assert tc.decode(cf, n_quantizers=2).shape == (SR,)
    cf.model_id = "ffffffffffffffff"
    with pytest.raises(CodeFileError, match="made by model ffffffffffffffff"):
        tc.decode(cf)


def test_cli_round_trip_and_errors(tmp_path, tiny_export, capsys):
    src = tmp_path / "in.wav"
    sf.write(src, speech(2.5, seed=4), SR)
    tcc, out = tmp_path / "a.tcc", tmp_path / "a.wav"
    assert cli.main(["encode", str(src), str(tcc), "--model", str(tiny_export), "--kbps",
                     "0.9"]) == 0  # fmt: skip
    cf = CodeFile.load(tcc)
    assert cf.n_q == 3 and cf.n_samples == round(2.5 * SR)
    assert cli.main(["decode", str(tcc), str(out), "--model", str(tiny_export)]) == 0
    y, rate = sf.read(out, dtype="float32")
    assert rate == SR and len(y) == cf.n_samples
    assert sf.info(out).subtype == "FLOAT"
    # a code file from another model (a well-formed one: its header checksum matches)
    cf.model_id = "ffffffffffffffff"
    cf.save(tmp_path / "b.tcc")
    assert cli.main(["decode", str(tmp_path / "b.tcc"), str(out), "--model",
                     str(tiny_export)]) == 2  # fmt: skip
    assert "made by model ffffffffffffffff" in capsys.readouterr().err
    # a bad audio file is named
    (tmp_path / "bad.wav").write_bytes(b"nonsense")
    assert cli.main(["encode", str(tmp_path / "bad.wav"), str(tcc), "--model",
                     str(tiny_export)]) == 2  # fmt: skip
    assert "bad.wav" in capsys.readouterr().err
