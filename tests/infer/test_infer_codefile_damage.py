"""A damaged or forged code-file header is refused, naming the file: never NaN audio, an
absurd output rate or a huge allocation (issue 14, item 11)."""

from __future__ import annotations

import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import soundfile as sf

from infer import cli
from infer.codefile import _HEADER, FORMAT_VERSION, HEADER_BYTES, MAGIC, CodeFile, CodeFileError
from tests.infer._inferdata import SR, speech

FIELDS = ("magic version model_id rate orig_rate orig_frames orig_ch n_q bits n_frames "
          "n_samples gain_db lufs n_payload crc header_crc").split()  # fmt: skip


def _file() -> bytes:
    rng = np.random.default_rng(3)
    return CodeFile(
        model_id="0123456789abcdef", sample_rate=16000, orig_rate=44100, orig_frames=44100 * 2,
        orig_channels=2, codebook_size=1024, n_samples=32000, gain_db=-4.5, loudness_lufs=-21.5,
        codes=rng.integers(0, 1024, size=(4, 100)),
    ).to_bytes()  # fmt: skip


def _forge(data: bytes, **fields) -> bytes:
    """``data`` with header ``fields`` replaced and a valid header checksum (a hostile file)."""
    values = dict(zip(FIELDS, _HEADER.unpack_from(data), strict=True))
    values.update(fields)
    header = bytearray(_HEADER.pack(*values.values()))
    struct.pack_into("<I", header, HEADER_BYTES - 4, zlib.crc32(header[: HEADER_BYTES - 4]))
    return bytes(header) + data[HEADER_BYTES:]


def _refused(data: bytes) -> str:
    """Parse ``data`` as x.tcc; assert it is refused naming the file, with little memory."""
    tracemalloc.start()
    try:
        with pytest.raises(CodeFileError) as err:
            CodeFile.from_bytes(data, "x.tcc")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(data) + (1 << 16), peak  # nothing sized by a header field
    assert str(err.value).startswith("x.tcc: ")
    return str(err.value)


def test_the_undamaged_file_reads_back():
    back = CodeFile.from_bytes(_file())
    assert back.sample_rate == 16000 and back.gain_db == -4.5 and back.n_frames == 100


@pytest.mark.parametrize("flip", [0xFF, 0x01, 0x80])
def test_every_flipped_header_byte_is_refused(flip):
    good = _file()
    for i in range(HEADER_BYTES):
        data = bytearray(good)
        data[i] ^= flip
        _refused(bytes(data))


def test_every_truncation_of_the_header_is_refused():
    good = _file()
    for n in range(HEADER_BYTES):
        _refused(good[:n])


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"rate": 1}, "model rate 1 Hz"),
        ({"rate": 16_000_000}, "model rate 16000000 Hz"),
        ({"orig_rate": 1}, "input rate 1 Hz"),
        ({"gain_db": math.nan}, "gain nan dB"),
        ({"gain_db": math.inf}, "gain inf dB"),
        ({"gain_db": 1e6}, "gain 1000000.0 dB"),
        ({"lufs": math.nan}, "loudness nan LUFS"),
        ({"orig_ch": 0}, "0 channels"),
        ({"bits": 0}, "0 bits"),
        ({"n_q": 0}, "0 codebooks"),
        ({"model_id": b"\x00" * 16}, "model id"),
        ({"orig_frames": 2**62}, "input length"),
        ({"n_samples": 2**62}, "samples in 100 frames"),
        ({"n_frames": 2**60}, "payload size does not match frames"),
        ({"n_frames": 2**60, "n_payload": 2**62}, "truncated"),
    ],
)
def test_forged_fields_with_a_valid_checksum_are_range_checked(fields, named):
    assert named in _refused(_forge(_file(), **fields))


def test_version_2_is_refused_with_a_message():
    data = bytearray(_file())
    struct.pack_into("<H", data, len(MAGIC), 2)
    msg = _refused(bytes(data))
    assert f"version 2, this TeluCodec reads version {FORMAT_VERSION}" in msg
    assert "no header checksum" in msg and "encode the audio again" in msg


def test_decode_cli_refuses_a_damaged_file_in_one_line(tmp_path, tiny_export, capsys):
    src, tcc, out = tmp_path / "in.wav", tmp_path / "a.tcc", tmp_path / "a.wav"
    sf.write(src, speech(1.0, seed=1), SR)
    assert cli.main(["encode", str(src), str(tcc), "--model", str(tiny_export)]) == 0
    data = bytearray(tcc.read_bytes())
    gain_at = 4 + 2 + 16 + 4 + 4 + 8 + 2 + 2 + 1 + 8 + 8  # the gain_db field
    data[gain_at + 7] ^= 0x7F  # exponent bits: a NaN or huge gain before version 3
    tcc.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli.main(["decode", str(tcc), str(out), "--model", str(tiny_export)]) == 2
    err = capsys.readouterr().err
    assert err == f"telucodec-decode: {tcc}: header checksum mismatch (corrupt file)\n"
    assert not out.exists()
