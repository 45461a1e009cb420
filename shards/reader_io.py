"""Bytes to samples for the reader: open a shard, walk its tar, decode FLAC chunks.

Shards are opened with webdataset's ``gopen`` (so local paths, ``file:``, ``pipe:`` commands
for object stores and http all work) and their members are grouped into samples with
webdataset's own key rule (``base_plus_ext``: the key is the file name up to its first dot),
skipping webdataset's ``__meta__`` entries as it does. The members are walked with the lean
:mod:`shards.tarwalk` rather than ``tar_file_iterator``: that one reads every member's bytes
through ``tarfile``, while the reader often wants only some samples of a tar (a virtual shard,
or the rest of a shard after a resume) and is bound by per-sample overhead; here a skipped
sample costs a header parse (a seek on local files).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from webdataset.gopen import gopen
from webdataset.tariterators import base_plus_ext

from shards.tarwalk import TarFormatError, TarWalk
from telucodec.errors import UserInputError

log = logging.getLogger("shards.reader")

# Share of a split's samples (manifest count) that may be undecodable before the training
# stream stops: one truncated 256-sample shard in a 100k-sample set is 0.26%.
DEFAULT_MAX_BAD_FRACTION = 0.01

# Statuses of a `pipe:` command we closed before it finished writing (SIGPIPE: 141 from a
# shell, -13 when the shell exec'd the command). Closing early is how we stop reading a shard.
_EARLY_CLOSE_STATUS = [141, -13]
_META = re.compile(r"__[^/]*__($|/)")  # webdataset's metadata entries, skipped as it does


def iter_tar_samples(
    url: str,
    want: Callable[[int], bool] | None = None,
    suffixes: tuple[str, ...] = ("flac", "json"),
) -> Iterator[tuple[int, str, dict[str, bytes]]]:
    """Yield ``(index, key, {suffix: bytes})`` for the samples of one tar shard.

    index: 0-based position of the sample in the tar (samples are runs of members sharing a
        key). want: if given, only samples with ``want(index)`` true are read and yielded;
        the others cost a header parse. suffixes: member extensions to read (lower case).
    Closing the generator early closes the stream (and ends a ``pipe:`` command quietly).
    """
    stream = gopen(url, "rb")
    finished = False
    try:
        index, key, files = -1, None, {}
        for member in TarWalk(stream, url):
            name = member.name
            if _META.match(name):
                continue
            prefix, suffix = base_plus_ext(name)
            if prefix is None:
                continue
            if prefix != key:
                if key is not None and (want is None or want(index)):
                    yield index, key, files
                index, key, files = index + 1, prefix, {}
            suffix = suffix.lower()
            if suffix in suffixes and (want is None or want(index)):
                if suffix in files:
                    raise TarFormatError(f"{url}: duplicate member {name}")
                files[suffix] = member.read()
        if key is not None and (want is None or want(index)):
            yield index, key, files
        finished = True
    finally:
        _close(stream, early=not finished)


def _close(stream, early: bool) -> None:
    if early and hasattr(stream, "ignore_status"):  # a webdataset Pipe
        stream.ignore_status = list(stream.ignore_status) + _EARLY_CLOSE_STATUS
    stream.close()


def flac_streaminfo(data: bytes) -> tuple[int, int, int] | None:
    """(sample rate Hz, channels, frames) from a FLAC stream's STREAMINFO block, or None if
    ``data`` does not start with one. Parsing these 26 bytes ourselves is ~20x cheaper than
    opening the stream with libsndfile, which matters at thousands of chunks per second."""
    if len(data) < 42 or data[:4] != b"fLaC" or data[4] & 0x7F != 0:
        return None
    bits = int.from_bytes(data[18:26], "big")  # rate:20 channels-1:3 bps-1:5 frames:36
    return bits >> 44, ((bits >> 41) & 0x7) + 1, bits & ((1 << 36) - 1)


class BadSample(ValueError):
    """One stored sample that cannot be used: its FLAC does not decode, it is not mono, or it
    holds no audio. ``reason`` is the part after the shard and key."""

    def __init__(self, url: str, key: str, reason: str):
        self.url, self.key, self.reason = url, key, reason
        super().__init__(f"{url}: sample {key} {reason}")


class TooManyBadSamples(UserInputError, ValueError):
    """More of a shard set is undecodable than ``max_bad_fraction`` allows."""


@dataclass(frozen=True)
class Hole:
    """Where a sample of the read plan could not be had: a corrupt or truncated tar (``key``
    None when the tar ended before it), or an undecodable FLAC. ``index``: position in the
    tar (-1 if unknown)."""

    url: str
    index: int
    key: str | None
    reason: str

    def __str__(self) -> str:
        if self.key is not None:
            return f"{self.url}: sample {self.key} {self.reason}"
        return f"{self.url}: {self.reason} (sample #{self.index} of the tar)"

    @property
    def ident(self) -> tuple[str, str | int]:
        return self.url, self.key if self.key is not None else self.index


class BadSampleLog:
    """Counts the distinct bad samples one reader met (each logged once, naming shard and key)
    and stops the stream with :class:`TooManyBadSamples` once they exceed ``max_fraction``
    of ``total`` (the split's samples in the manifest). 0 stops at the first one."""

    def __init__(self, total: int, max_fraction: float = DEFAULT_MAX_BAD_FRACTION):
        self.total, self.max_fraction = total, max_fraction
        self._seen: set[tuple[str, str | int]] = set()

    @property
    def count(self) -> int:
        return len(self._seen)

    def record(self, hole: Hole) -> None:
        if hole.ident in self._seen:
            return
        self._seen.add(hole.ident)
        if self.count > self.max_fraction * self.total:
            raise TooManyBadSamples(
                f"{hole}; {self.count} bad samples met, more than "
                f"data.max_bad_sample_fraction={self.max_fraction:g} of the {self.total} in "
                "the manifest: the shard set is damaged (check it with telucodec-audit)"
            )
        log.warning("skipping a bad sample: %s (%d so far)", hole, self.count)


# Merge crop spans closer than this (samples): a libsndfile FLAC seek costs about one
# 4096-sample frame of decoding, so reading through a smaller gap is cheaper than seeking.
MERGE_GAP = 4096


class FlacChunk:
    """One stored chunk: FLAC bytes, decoded on demand to float32.

    ``frames`` (samples) comes from the FLAC header, so choosing crop offsets costs no
    decoding. :meth:`prepare` decodes just the union of the spans the chunk's crops need, in
    one pass (FLAC seeks to the frame holding a span's start; lossless, so the samples equal
    those of a full decode); :meth:`read` then copies crops out of it.
    """

    __slots__ = ("key", "url", "data", "frames", "_spans")
    # errors of the stored bytes raise BadSample (a ValueError naming shard and key); a chunk
    # at another rate than the shard set raises plain ValueError: a wrong set, not damage

    def __init__(self, key: str, url: str, data: bytes, sample_rate: int | None):
        self.key, self.url, self.data = key, url, data
        self._spans: list[tuple[int, np.ndarray]] = []  # (start sample, decoded float32)
        info = flac_streaminfo(data)
        if info is None:  # not a plain FLAC stream: let libsndfile judge it
            try:
                with sf.SoundFile(io.BytesIO(data)) as f:
                    info = f.samplerate, f.channels, f.frames
            except (sf.LibsndfileError, RuntimeError, TypeError) as e:
                raise self._error(f"cannot decode FLAC ({e})") from e
        rate, channels, frames = info
        if sample_rate is not None and rate != sample_rate:
            raise ValueError(
                f"{url}: sample {key} is {rate} Hz but the shard set is {sample_rate} Hz"
            )
        if channels != 1:
            raise self._error(f"has {channels} channels, expected mono")
        self.frames = int(frames)
        if self.frames <= 0:  # header without a length: find out by decoding
            self.frames = len(self.decode_all())
        if self.frames <= 0:
            raise self._error("holds no audio")

    def _error(self, what: str) -> BadSample:
        return BadSample(self.url, self.key, what)

    def release(self) -> None:
        """Drop the decoded audio (the FLAC bytes stay; a later read decodes again)."""
        self._spans = []

    def decode_all(self) -> np.ndarray:
        """The whole chunk, float32 [frames], cached."""
        if not (self._spans and self._spans[0][0] == 0 and len(self._spans[0][1]) >= self.frames):
            try:
                audio, _ = sf.read(io.BytesIO(self.data), dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise self._error(f"cannot decode FLAC ({e})") from e
            self._spans = [(0, audio[:, 0])]
        return self._spans[0][1]

    def prepare(self, offsets: list[int], count: int) -> None:
        """Decode the union of ``[o, o + count)`` over ``offsets`` (clipped to the chunk) and
        keep it for :meth:`read`; spans closer than ``MERGE_GAP`` are read through."""
        spans: list[list[int]] = []
        for o in sorted(offsets):
            end = min(o + count, self.frames)
            if spans and o <= spans[-1][1] + MERGE_GAP:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([o, end])
        decoded = []
        try:
            with sf.SoundFile(io.BytesIO(self.data)) as f:
                for start, end in spans:
                    if start:
                        f.seek(start)
                    audio = f.read(end - start, dtype="float32")
                    if len(audio) != end - start:
                        raise self._error(
                            f"FLAC header says {self.frames} samples but decoding stopped at "
                            f"{start + len(audio)}"
                        )
                    decoded.append((start, audio))
        except (sf.LibsndfileError, RuntimeError) as e:
            raise self._error(f"cannot decode FLAC ({e})") from e
        self._spans = decoded

    def read(self, offset: int, count: int, out: np.ndarray) -> int:
        """Write samples ``[offset, offset + count)`` (clipped to the chunk) into ``out``
        (float32, at least ``count`` long); return how many were written. Decodes the span
        now unless :meth:`prepare` or :meth:`decode_all` already did."""
        count = max(0, min(count, self.frames - offset))
        for start, audio in self._spans:
            if start <= offset and offset + count <= start + len(audio):
                out[:count] = audio[offset - start : offset - start + count]
                return count
        self.prepare([offset], count)
        return self.read(offset, count, out)


def stand_in(chunks: list, i: int, bad: BadSampleLog) -> FlacChunk | None:
    """The first chunk after ``i`` (cyclically) in the block that decodes whole, to give
    the crops of bad chunk ``i``; None if there is none. Tried in a fixed order and judged
    by decoding only, never by what was met before, so a resumed stream picks the same."""
    m = len(chunks)
    for d in range(1, m):
        ch = chunks[(i + d) % m]
        if not isinstance(ch, FlacChunk):
            continue
        try:
            ch.decode_all()
        except BadSample as e:
            bad.record(Hole(e.url, -1, e.key, e.reason))
            continue
        return ch
    return None
