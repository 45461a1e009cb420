"""The ``.tcc`` code file: a small fixed header, then the codes bit-packed.

Layout (little-endian)::

    magic      4 bytes  b"TCC\\x00"
    version    u16      FORMAT_VERSION
    model_id   16 bytes ASCII hex: the export's model_id (hash of weights + config)
    rate       u32      Hz, the model's sample rate (the rate the model decodes at)
    orig_rate  u32      Hz, the input's rate (decoding resamples back to it by default)
    orig_frames u64     the input's length in samples per channel at ``orig_rate``
    orig_ch    u16      the input's channel count (informational: the codec is mono)
    n_q        u16      codebooks stored per frame
    bits       u8       bits per code = ceil(log2(codebook_size)), 1..16
    n_frames   u64      code frames
    n_samples  u64      decoded length in samples at ``rate`` (<= n_frames * hop - tail)
    gain_db    f64      gain applied before encoding (decode applies its inverse), dB
    loudness   f64      input's BS.1770 integrated loudness, LUFS (-inf: unmeasurable)
    payload    u64      payload bytes = ceil(n_frames * n_q * bits / 8)
    crc32      u32      of the payload
    header_crc u32      CRC32 of every header byte before it (magic to payload crc32)
    payload             codes, frame-major (frame 0's n_q codes, then frame 1's, ...),
                        each written MSB first in ``bits`` bits, zero-padded to a byte

So the payload is exactly ``n_frames * n_q * bits`` bits (+ at most 7 padding bits): the
nominal bitrate times the duration, rounded up to the frames that cover it
(:meth:`codec.generator.Codec.frames_for`: one more when the input ends within the decoder's
``tail`` samples of a frame boundary).

Version 2 added ``orig_frames`` and ``orig_ch`` so decoding can give back a file of the
input's exact rate and length. Version 3 added ``header_crc``: in version 2 a flipped header
byte decoded to NaN audio (the gain), a 1 Hz or 16 MHz output, or a multi-TiB allocation,
all with exit status 0. Older versions are refused with a message saying so, rather than
read unchecked: one format, one reader. Beyond the checksum, every header field is checked
against its range and the sizes against the file's length (a hostile file can carry a valid
CRC), so reading a file never allocates more than a small multiple of its size.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from telucodec.errors import UserInputError, environment_fault

MAGIC = b"TCC\x00"
FORMAT_VERSION = 3
MAX_BITS = 16
_HEADER = struct.Struct("<4sH16sIIQHHBQQddQII")
HEADER_BYTES = _HEADER.size
# Field ranges a genuine file stays within (far outside them is damage or forgery).
RATE_RANGE = (1000, 768_000)  # Hz: model and input rates
MAX_CHANNELS = 1024
MAX_CODEBOOKS = 1024
MAX_HOP = 1 << 16  # samples per code frame; n_samples <= n_frames * MAX_HOP
MAX_ABS_GAIN_DB = 200.0
LOUDNESS_RANGE = (-200.0, 50.0)  # LUFS; -inf (unmeasurable) is also valid


class CodeFileError(UserInputError, ValueError):
    """A code file that cannot be used (not a code file, wrong version or model, truncated,
    corrupt); ``str(err)`` names the file and the reason."""


def bits_for(codebook_size: int) -> int:
    """Bits per code for a codebook of ``codebook_size`` entries: ``ceil(log2(size))``."""
    if not 2 <= codebook_size <= 2**MAX_BITS:
        raise ValueError(f"codebook_size: must be in 2..{2**MAX_BITS}, got {codebook_size}")
    return math.ceil(math.log2(codebook_size))


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Codes ``[n_q, F]`` (ints in ``0..2**bits - 1``) -> frame-major MSB-first bit string."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits: must be in 1..{MAX_BITS}, got {bits}")
    c = np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"codes: expected [n_q, F], got shape {c.shape}")
    if c.size and (c.min() < 0 or c.max() >= 2**bits):
        raise ValueError(f"codes: entries must be in 0..{2**bits - 1} for {bits} bits")
    flat = c.T.reshape(-1).astype(np.uint32)  # frame-major
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    bitmat = ((flat[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bitmat.reshape(-1)).tobytes()


def unpack_codes(payload: bytes, n_q: int, n_frames: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``[n_q, n_frames]`` int64."""
    n = n_q * n_frames
    need = math.ceil(n * bits / 8)
    if len(payload) < need:
        raise ValueError(f"payload: {len(payload)} bytes, need {need}")
    bitarr = np.unpackbits(np.frombuffer(payload, np.uint8, count=need))[: n * bits]
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    flat = bitarr.reshape(n, bits).astype(np.int64) @ weights
    return flat.reshape(n_frames, n_q).T.copy()


@dataclass
class CodeFile:
    """Codes plus what decoding needs. ``codes``: ``[n_q, n_frames]`` int64."""

    model_id: str
    sample_rate: int
    orig_rate: int
    orig_frames: int
    orig_channels: int
    codebook_size: int
    n_samples: int
    gain_db: float
    loudness_lufs: float
    codes: np.ndarray

    @property
    def n_q(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.codes.shape[1])

    @property
    def bits(self) -> int:
        return bits_for(self.codebook_size)

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate

    def payload_bytes(self) -> int:
        return math.ceil(self.n_frames * self.n_q * self.bits / 8)

    def to_bytes(self) -> bytes:
        mid = self.model_id.encode("ascii")
        if len(mid) != 16:
            raise ValueError(f"model_id: expected 16 hex characters, got {self.model_id!r}")
        payload = pack_codes(self.codes, self.bits)
        header = _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            mid,
            self.sample_rate,
            self.orig_rate,
            self.orig_frames,
            self.orig_channels,
            self.n_q,
            self.bits,
            self.n_frames,
            self.n_samples,
            self.gain_db,
            self.loudness_lufs,
            len(payload),
            zlib.crc32(payload),
            0,
        )
        return _with_header_crc(header) + payload

    def save(self, path: str | os.PathLike) -> int:
        """Write atomically (temp file + rename); returns the file size in bytes."""
        p = Path(path)
        data = self.to_bytes()
        tmp = p.with_name(p.name + ".tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, p)
        except OSError as e:  # a read-only or full output folder: stop, naming the file asked for
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise environment_fault(e, p, "writing the code file") from e
        return len(data)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> CodeFile:
        if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
            raise CodeFileError(f"{name}: not a TeluCodec code file (bad magic)")
        if len(data) < len(MAGIC) + 2:
            raise CodeFileError(f"{name}: truncated header ({len(data)} of {HEADER_BYTES} bytes)")
        version = struct.unpack_from("<H", data, len(MAGIC))[0]
        if version != FORMAT_VERSION:
            old = {
                1: " (a pre-release format: encode the audio again)",
                2: " (version 2 has no header checksum: encode the audio again)",
            }.get(version, " (damaged, or written by a newer TeluCodec)")
            raise CodeFileError(
                f"{name}: code file format version {version}, this TeluCodec reads version "
                f"{FORMAT_VERSION}{old}"
            )
        if len(data) < HEADER_BYTES:
            raise CodeFileError(f"{name}: truncated header ({len(data)} of {HEADER_BYTES} bytes)")
        if _with_header_crc(data[:HEADER_BYTES]) != data[:HEADER_BYTES]:
            raise CodeFileError(f"{name}: header checksum mismatch (corrupt file)")
        (_, _, mid, rate, orig_rate, orig_frames, orig_ch, n_q, bits, n_frames, n_samples,
         gain_db, lufs, n_payload, crc, _) = _HEADER.unpack_from(data)  # fmt: skip
        _check_ranges(name, mid, rate, orig_rate, orig_ch, n_q, bits, gain_db, lufs)
        if n_payload != len(data) - HEADER_BYTES:
            have = len(data) - HEADER_BYTES
            raise CodeFileError(
                f"{name}: "
                + (
                    f"truncated: payload has {have} of {n_payload} bytes "
                    f"({have * 8 // (n_q * bits)} of {n_frames} frames)"
                    if have < n_payload
                    else f"{have - n_payload} unexpected trailing bytes"
                )
            )
        if n_payload != -(-n_frames * n_q * bits // 8):  # exact ceil: n_frames may be huge
            raise CodeFileError(f"{name}: corrupt header (payload size does not match frames)")
        if n_samples > n_frames * MAX_HOP:
            raise CodeFileError(
                f"{name}: corrupt header ({n_samples} samples in {n_frames} frames)"
            )
        expect = n_samples * orig_rate / rate  # the input's length, from the decoded length
        if abs(orig_frames - expect) > 2 * orig_rate / rate + 2 + expect * 1e-3:
            raise CodeFileError(
                f"{name}: corrupt header (input length {orig_frames} samples at {orig_rate} Hz "
                f"does not match {n_samples} samples at {rate} Hz)"
            )
        payload = data[HEADER_BYTES:]
        if zlib.crc32(payload) != crc:
            raise CodeFileError(f"{name}: payload checksum mismatch (corrupt file)")
        return cls(
            model_id=mid.decode("ascii", errors="replace"),
            sample_rate=rate,
            orig_rate=orig_rate,
            orig_frames=orig_frames,
            orig_channels=orig_ch,
            codebook_size=2**bits,
            n_samples=n_samples,
            gain_db=gain_db,
            loudness_lufs=lufs,
            codes=unpack_codes(payload, n_q, n_frames, bits),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> CodeFile:
        """Read and check a code file; :class:`CodeFileError` naming ``path`` if it is not a
        usable one (another format or version, truncated, damaged, out-of-range fields)."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise CodeFileError(f"{p}: cannot read: {e.strerror or e}") from e
        return cls.from_bytes(data, str(p))

    def check_model(self, model_id: str, name: str = "code file") -> None:
        """Raise :class:`CodeFileError` unless this file was made by model ``model_id``."""
        if self.model_id != model_id:
            raise CodeFileError(
                f"{name}: made by model {self.model_id}, but the loaded model is {model_id} "
                "(decode with the export that encoded it)"
            )


def _with_header_crc(header: bytes) -> bytes:
    """``header`` with its last 4 bytes set to the CRC32 of the bytes before them."""
    body = header[: HEADER_BYTES - 4]
    return body + struct.pack("<I", zlib.crc32(body))


def _check_ranges(
    name: str,
    mid: bytes,
    rate: int,
    orig_rate: int,
    orig_ch: int,
    n_q: int,
    bits: int,
    gain_db: float,
    lufs: float,
) -> None:
    """Refuse header fields outside what any genuine file holds (named in the message)."""
    bad = None
    if not all(c in b"0123456789abcdef" for c in mid):
        bad = f"model id {mid!r}"
    elif not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        bad = f"model rate {rate} Hz"
    elif not RATE_RANGE[0] <= orig_rate <= RATE_RANGE[1]:
        bad = f"input rate {orig_rate} Hz"
    elif not 1 <= orig_ch <= MAX_CHANNELS:
        bad = f"{orig_ch} channels"
    elif not 1 <= n_q <= MAX_CODEBOOKS:
        bad = f"{n_q} codebooks"
    elif not 1 <= bits <= MAX_BITS:
        bad = f"{bits} bits per code"
    elif not (math.isfinite(gain_db) and abs(gain_db) <= MAX_ABS_GAIN_DB):
        bad = f"gain {gain_db} dB"
    elif not (lufs == -math.inf or LOUDNESS_RANGE[0] <= lufs <= LOUDNESS_RANGE[1]):
        bad = f"input loudness {lufs} LUFS"
    if bad is not None:
        raise CodeFileError(f"{name}: corrupt header ({bad} is out of range)")
