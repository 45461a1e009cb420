"""Code file: bit-packing round trip, header errors, payload size vs nominal bitrate."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from infer.codefile import (
    FORMAT_VERSION,
    HEADER_BYTES,
    MAGIC,
    CodeFile,
    CodeFileError,
    bits_for,
    pack_codes,
    unpack_codes,
)


@pytest.mark.parametrize("bits", range(1, 13))
def test_pack_round_trip_every_width(bits):
    rng = np.random.default_rng(bits)
    n_q, frames = 5, 37  # odd sizes so the bit string does not end on a byte boundary
    codes = rng.integers(0, 2**bits, size=(n_q, frames))
    codes[0, 0], codes[-1, -1] = 0, 2**bits - 1  # both extremes present
    payload = pack_codes(codes, bits)
    assert len(payload) == -(-n_q * frames * bits // 8)
    np.testing.assert_array_equal(unpack_codes(payload, n_q, frames, bits), codes)


def test_every_codebook_size_has_the_right_width_and_round_trips():
    rng = np.random.default_rng(0)
    for size in range(2, 4097):
        bits = bits_for(size)
        assert 2 ** (bits - 1) < size <= 2**bits
        if size in (2, 3, 4, 5, 63, 64, 65, 1000, 1023, 1024, 1025, 4095, 4096) or size % 97 == 0:
            codes = rng.integers(0, size, size=(3, 11))
            codes[0, 0] = size - 1
            np.testing.assert_array_equal(unpack_codes(pack_codes(codes, bits), 3, 11, bits), codes)


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError, match="entries must be in 0..63"):
        pack_codes(np.array([[64]]), 6)


def _cf(**kw) -> CodeFile:
    rng = np.random.default_rng(1)
    base = dict(model_id="0123456789abcdef", sample_rate=16000, orig_rate=44100,
                orig_frames=44100 * 3, orig_channels=2, codebook_size=1024, n_samples=16000 * 3, gain_db=-4.5, loudness_lufs=-21.5,
                codes=rng.integers(0, 1024, size=(8, 150)))  # fmt: skip
    base.update(kw)
    return CodeFile(**base)


def test_file_round_trip(tmp_path):
    cf = _cf()
    size = cf.save(tmp_path / "a.tcc")
    back = CodeFile.load(tmp_path / "a.tcc")
    assert size == HEADER_BYTES + cf.payload_bytes()
    assert dataclasses.replace(back, codes=None) == dataclasses.replace(cf, codes=None)
    np.testing.assert_array_equal(back.codes, cf.codes)


def test_payload_matches_nominal_bitrate():
    # 12 x 10 bits x 50 frames/s = 6 kbps; 10 s -> 7500 bytes nominal
    for seconds, n_q in ((10.0, 12), (10.0, 8), (2.5, 1), (3.33, 5)):
        frames = -(-round(seconds * 16000) // 320)
        cf = _cf(codes=np.zeros((n_q, frames), np.int64), n_samples=round(seconds * 16000))
        nominal = n_q * 10 * 50 * seconds / 8
        assert abs(cf.payload_bytes() - nominal) <= 0.01 * nominal
        assert len(cf.to_bytes()) - HEADER_BYTES == cf.payload_bytes()


def test_wrong_model_is_named():
    cf = _cf()
    with pytest.raises(CodeFileError, match="made by model 0123456789abcdef.*ffffffffffffffff"):
        cf.check_model("ffffffffffffffff", "x.tcc")


def test_truncated_payload(tmp_path):
    data = _cf().to_bytes()
    (tmp_path / "t.tcc").write_bytes(data[:-10])
    with pytest.raises(CodeFileError, match=r"t\.tcc: truncated: payload has"):
        CodeFile.load(tmp_path / "t.tcc")


def test_truncated_header(tmp_path):
    (tmp_path / "h.tcc").write_bytes(_cf().to_bytes()[:20])
    with pytest.raises(CodeFileError, match="truncated header"):
        CodeFile.load(tmp_path / "h.tcc")


def test_wrong_version(tmp_path):
    data = bytearray(_cf().to_bytes())
    struct.pack_into("<H", data, len(MAGIC), FORMAT_VERSION + 1)
    (tmp_path / "v.tcc").write_bytes(bytes(data))
    with pytest.raises(CodeFileError, match=f"version {FORMAT_VERSION + 1}, this TeluCodec"):
        CodeFile.load(tmp_path / "v.tcc")


def test_version_1_is_refused_as_pre_release(tmp_path):
    # a version-1 file is shorter than the version-2 header: the version still decides
    data = bytearray(_cf().to_bytes()[:77])
    struct.pack_into("<H", data, len(MAGIC), 1)
    (tmp_path / "v1.tcc").write_bytes(bytes(data))
    with pytest.raises(CodeFileError, match="v1.tcc: code file format version 1.*pre-release"):
        CodeFile.load(tmp_path / "v1.tcc")


def test_header_holds_the_input_rate_length_and_channels():
    # 123457 samples at 22050 Hz are 89583 at the model's 16 kHz (the header checks they agree)
    cf = _cf(orig_rate=22050, orig_frames=123457, orig_channels=6, n_samples=89583)
    back = CodeFile.from_bytes(cf.to_bytes())
    assert (back.orig_rate, back.orig_frames, back.orig_channels) == (22050, 123457, 6)
    assert HEADER_BYTES == 91  # version 3: 87 bytes + the header checksum


def test_not_a_code_file_and_corrupt_payload(tmp_path):
    (tmp_path / "n.tcc").write_bytes(b"RIFF....WAVE")
    with pytest.raises(CodeFileError, match="not a TeluCodec code file"):
        CodeFile.load(tmp_path / "n.tcc")
    data = bytearray(_cf().to_bytes())
    data[-1] ^= 0xFF
    with pytest.raises(CodeFileError, match="checksum"):
        CodeFile.from_bytes(bytes(data))
    with pytest.raises(CodeFileError, match="trailing"):
        CodeFile.from_bytes(_cf().to_bytes() + b"\0")
