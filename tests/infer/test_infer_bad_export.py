"""A tampered, truncated, non-finite or damaged export is refused naming the file, and the
inference commands turn user and environment faults into one line and exit 2 (issue 14,
items 12 and 13)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import soundfile as sf
from safetensors.torch import load_file

from codec.config import CodecConfig
from codec.export_format import WEIGHTS, ExportError, export_state_dict
from infer import cli
from infer import eval as infer_eval
from infer.api import TeluCodec
from tests.infer._inferdata import SR, TINY, speech


@pytest.fixture
def export(tiny_export, tmp_path):
    """A copy of the tiny export to damage."""
    return shutil.copytree(tiny_export, tmp_path / "export")


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "in.wav"
    sf.write(path, speech(1.0, seed=2), SR)
    return path


def error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), err
    return lines[0]


def test_a_tampered_weight_byte_is_caught_by_the_model_id(export, wav, tmp_path, capsys):
    data = bytearray((export / WEIGHTS).read_bytes())
    data[-3] ^= 0x40  # inside the last tensor: still a valid safetensors file
    (export / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"model\.safetensors: the weights hash to model id"):
        TeluCodec.load(export, "cpu")
    rc = cli.main(["encode", str(wav), str(tmp_path / "a.tcc"), "--model", str(export)])
    assert rc == 2
    line = error_line(capsys, "telucodec-encode")
    assert str(export / WEIGHTS) in line and "tampered" in line
    assert not (tmp_path / "a.tcc").exists()


def test_a_truncated_export_is_named(export, wav, tmp_path, capsys):
    data = (export / WEIGHTS).read_bytes()
    (export / WEIGHTS).write_bytes(data[: len(data) // 2])
    assert cli.main(["encode", str(wav), str(tmp_path / "a.tcc"), "--model", str(export)]) == 2
    assert str(export / WEIGHTS) in error_line(capsys, "telucodec-encode")


def test_nan_weights_are_refused_even_with_a_matching_id(tiny_export, tmp_path):
    state = load_file(str(tiny_export / WEIGHTS))
    key = sorted(state)[3]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    out = export_state_dict(state, CodecConfig(**TINY), -26.0, -1.0, tmp_path / "nan")
    with pytest.raises(ExportError, match=rf"{WEIGHTS}: tensor {key} holds 1 NaN/Inf values"):
        TeluCodec.load(out, "cpu")


@pytest.mark.parametrize(
    "meta", [b"\x00garbage", b"[]", b'{"export_version": 2, "codec": {"nope": 1}}']
)
def test_a_damaged_codec_json_is_named(export, wav, tmp_path, capsys, meta):
    (export / "codec.json").write_bytes(meta)
    assert cli.main(["decode", str(wav), str(tmp_path / "x.wav"), "--model", str(export)]) == 2
    assert str(export / "codec.json") in error_line(capsys, "telucodec-decode")


def test_a_missing_export_is_named(tmp_path, wav, capsys):
    assert cli.main(["encode", str(wav), str(tmp_path / "a.tcc"), "--model", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a TeluCodec export" in error_line(capsys, "telucodec-encode")


def test_the_model_id_still_matches_an_untouched_export(tiny_export):
    meta = json.loads((tiny_export / "codec.json").read_text())
    assert TeluCodec.load(tiny_export, "cpu").model_id == meta["model_id"]


def test_a_read_only_out_dir_is_named(tiny_export, wav, tmp_path, capsys, monkeypatch):
    out = tmp_path / "codes"
    real_mkdir = type(out).mkdir

    def mkdir(self, *a, **k):  # what a read-only mount answers (tests may run as root)
        if self == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(type(out), "mkdir", mkdir)
    rc = cli.main(["encode", str(wav), "--out-dir", str(out), "--model", str(tiny_export)])
    assert rc == 2
    line = error_line(capsys, "telucodec-encode")
    assert line == f"telucodec-encode: error: {out}: creating the output folder failed: " + (
        "Read-only file system"
    )


def test_a_bitrate_the_model_lacks_is_one_line(tiny_export, wav, tmp_path, capsys):
    rc = cli.main(["encode", str(wav), str(tmp_path / "a.tcc"), "--model", str(tiny_export),
                   "--kbps", "0.01"])  # fmt: skip
    assert rc == 2
    assert "kbps" in error_line(capsys, "telucodec-encode")


def test_eval_names_a_bad_audio_folder_and_a_damaged_export(tiny_export, export, tmp_path, capsys):
    args = ["--audio", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--opus-kbps", ""]
    assert infer_eval.main(["--model", str(tiny_export), *args]) == 2
    assert f"{tmp_path / 'none'}: not a folder" in error_line(capsys, "telucodec-eval")
    (export / WEIGHTS).write_bytes(b"")
    assert infer_eval.main(["--model", str(export), *args]) == 2
    assert str(export / WEIGHTS) in error_line(capsys, "telucodec-eval")


def test_export_writes_the_bytes_save_file_wrote(tiny_export, tmp_path):
    """Writing the bytes ourselves (for OSErrors that name the path) keeps the file, so the
    model ids of earlier exports stay valid."""
    from safetensors.torch import save_file

    state = load_file(str(tiny_export / WEIGHTS))
    out = export_state_dict(state, CodecConfig(**TINY), -26.0, -1.0, tmp_path / "again")
    save_file(state, str(tmp_path / "ref.safetensors"))
    assert (out / WEIGHTS).read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    assert TeluCodec.load(out, "cpu").model_id == TeluCodec.load(tiny_export, "cpu").model_id


def test_eval_names_a_missing_opus_and_a_read_only_out(
    tiny_export, wav, tmp_path, capsys, monkeypatch
):
    args = ["--model", str(tiny_export), "--audio", str(wav.parent), "--out", str(tmp_path / "o")]

    def no_opus(*a, **k):  # what evaluate raises without opus-tools
        raise FileNotFoundError("opusenc/opusdec not found (install opus-tools, or --opus-kbps '')")

    monkeypatch.setattr(infer_eval, "evaluate", no_opus)
    assert infer_eval.main(args) == 2
    assert "opusenc/opusdec not found" in error_line(capsys, "telucodec-eval")

    def read_only(result, out):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), f"{out}/eval.json")

    monkeypatch.setattr(infer_eval, "evaluate", lambda *a, **k: {})
    monkeypatch.setattr(infer_eval, "write_outputs", read_only)
    assert infer_eval.main(args) == 2
    line = error_line(capsys, "telucodec-eval")
    assert f"{tmp_path / 'o'}/eval.json: writing the evaluation failed: Read-only" in line


def test_a_version_1_export_is_refused_with_what_to_do(tiny_export, tmp_path, capsys, wav):
    """Version 1 predates the decoder's DAC-exact length: same weights, different decoder."""
    old = tmp_path / "old"
    shutil.copytree(tiny_export, old)
    meta = json.loads((old / "codec.json").read_text())
    (old / "codec.json").write_text(json.dumps({**meta, "export_version": 1}))
    assert cli.main(["decode", str(wav), str(tmp_path / "x.wav"), "--model", str(old)]) == 2
    line = error_line(capsys, "telucodec-decode")
    assert str(old / "codec.json") in line and "export the run's checkpoint again" in line
