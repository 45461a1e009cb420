"""Turn any supported recording into mono float32 at the target rate, one block at a time.

This is *the* conversion path: prep uses it to build shards and inference uses the same
functions (not a copy), so a model never hears audio conditioned differently from what it
was trained on. The chain, per block::

    read (libsndfile, any rate/channels; integer PCM read as integers)
        ->  downmix (mean of channels)  ->  subtract the file's first sample (a constant)
        ->  resample (soxr streaming, HQ)
        ->  DC high-pass (2nd-order Butterworth, 10 Hz, state carried across blocks)
        ->  mono float32 at ``out_rate``

Why a streaming high-pass and not "subtract the mean": inference reads hours-long files
in blocks. A per-block (or per-chunk) mean is a step that changes at every block boundary,
which puts audible seams into the output; a filter whose state is carried from block to
block gives exactly the same samples whatever the block size. 10 Hz is well below the
lowest voice fundamental (~70 Hz) so speech is untouched.

Why subtract the first sample: resampler and filter both assume silence before the file.
A file with a DC offset would then start with a 0-to-offset step, which the resampler
rings on and the high-pass turns into a slow thump. Subtracting one constant removes the
step without any seam (for a linear filter this is the same as starting its state in
steady state at the first sample), and the high-pass removes whatever DC is left.
The high-pass runs after the resampler, at the (lower) output rate: same result, a third
of the work for 48 kHz input.

Memory: only one block (``block_seconds`` of input) plus the filter and resampler state
are held at a time, whatever the file length.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf
import soxr

from telucodec.errors import UserInputError

SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
MIN_RATE_HZ = 8_000
MAX_RATE_HZ = 192_000
DC_HIGHPASS_HZ = 10.0
DEFAULT_BLOCK_SECONDS = 10.0
# soxr "HQ" is 20-bit precision with a steep anti-alias filter: far below the 24-bit
# storage noise floor for speech, and ~1.5x faster than "VHQ" (28-bit), which would only
# buy precision that 16 kHz speech training cannot use.
DEFAULT_RESAMPLE_QUALITY = "HQ"


class AudioError(UserInputError):
    """A recording that cannot be used; ``str(err)`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedAudioError(AudioError):
    """Wrong extension, container or sample rate."""


class UnreadableAudioError(AudioError):
    """libsndfile could not open or decode the file (corrupt, truncated, not audio)."""


class EmptyAudioError(AudioError):
    """The file holds zero samples."""


class NonFiniteAudioError(AudioError):
    """NaN or Inf samples (float files only): the file is rejected, never "repaired"."""


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says. ``frames`` are samples per channel."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def probe(path: str | os.PathLike) -> AudioInfo:
    """Read and check the header of ``path``.

    Raises an :class:`AudioError` subclass naming the file for an unsupported extension,
    a header libsndfile cannot read, a sample rate outside 8-192 kHz, or zero frames.
    """
    p = Path(path)
    if p.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise UnsupportedAudioError(
            p,
            f"unsupported extension {p.suffix or '(none)'!r}; "
            f"expected one of {', '.join(SUPPORTED_EXTENSIONS)}",
        )
    try:
        if p.stat().st_size == 0:
            raise EmptyAudioError(p, "empty file (0 bytes)")
        info = sf.info(str(p))
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        why = getattr(e, "error_string", None) or str(e)  # libsndfile's words, sans path
        raise UnreadableAudioError(p, f"cannot read audio header: {why}") from e
    if not MIN_RATE_HZ <= info.samplerate <= MAX_RATE_HZ:
        raise UnsupportedAudioError(
            p, f"sample rate {info.samplerate} Hz is outside {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz"
        )
    if info.frames <= 0:
        raise EmptyAudioError(p, "no audio samples (zero-length)")
    if info.channels < 1:
        raise UnreadableAudioError(p, f"header reports {info.channels} channels")
    return AudioInfo(
        path=str(p),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=info.format,
        subtype=info.subtype,
    )


def resample_stream(
    in_rate: int, out_rate: int, quality: str = DEFAULT_RESAMPLE_QUALITY
) -> soxr.ResampleStream | None:
    """soxr's streaming resampler for mono float32, as prep configures it; None when the
    rates are equal. Prep's :class:`Conditioner` and inference's output stage
    (:mod:`infer.restore`) both use it, so audio goes in and out through one resampler."""
    if in_rate == out_rate:
        return None
    return soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)


class Conditioner:
    """Streaming downmix + DC removal + resample for one continuous recording.

    Feed consecutive blocks to :meth:`process` and call :meth:`flush` once at the end. The
    concatenated output does not depend on how the input was cut into blocks, and its total
    length is exactly ``round(frames_in * out_rate / in_rate)`` samples, so sample ``n`` of
    the output is at ``n / out_rate`` seconds of the source.

    in_rate, out_rate: Hz. quality: soxr quality ("HQ" or "VHQ").
    """

    def __init__(
        self,
        in_rate: int,
        out_rate: int,
        *,
        highpass_hz: float = DC_HIGHPASS_HZ,
        quality: str = DEFAULT_RESAMPLE_QUALITY,
    ):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        if not 0 < highpass_hz < out_rate / 2:
            raise ValueError(f"highpass_hz={highpass_hz} must be in (0, {out_rate / 2})")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._sos = scipy.signal.butter(2, highpass_hz, "highpass", fs=out_rate, output="sos")
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._offset: np.float32 | None = None
        self._resampler = resample_stream(in_rate, out_rate, quality)
        self.frames_in = 0
        self.samples_out = 0
        self._flushed = False

    def process(self, block: np.ndarray) -> np.ndarray:
        """block: (frames,) or (frames, channels); float (full scale 1.0) or signed integer
        PCM (full scale = the dtype's range, e.g. int16 read straight from a 16-bit WAV).

        Returns mono float32 at ``out_rate`` (length varies: the resampler buffers).
        Non-finite input is the caller's business (see :func:`stream_conditioned`).
        """
        if self._flushed:
            raise RuntimeError("Conditioner.process called after flush()")
        x = downmix(block)
        if x.size == 0:
            return np.zeros(0, np.float32)
        if self._offset is None:
            self._offset = np.float32(x[0])
        x -= self._offset
        self.frames_in += len(x)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        return self._emit(self._highpass(x))

    def flush(self) -> np.ndarray:
        """Drain the resampler and return the last samples (trimmed or zero-padded so the
        total output is exactly ``round(frames_in * out_rate / in_rate)`` samples)."""
        if self._flushed:
            return np.zeros(0, np.float32)
        self._flushed = True
        y = np.zeros(0, np.float32)
        if self._resampler is not None:
            y = self._highpass(self._resampler.resample_chunk(y, last=True))
        y = self._emit(y)
        missing = self.expected_samples_out - self.samples_out
        if missing > 0:  # soxr is exact to within a sample or two; never more than that
            self.samples_out += missing
            y = np.concatenate([y, np.zeros(missing, np.float32)])
        return y

    @property
    def expected_samples_out(self) -> int:
        return round(self.frames_in * self.out_rate / self.in_rate)

    def _highpass(self, x: np.ndarray) -> np.ndarray:
        if x.size == 0:
            return np.zeros(0, np.float32)
        # float64 state: the 10 Hz poles sit within 0.4% of the unit circle at 16 kHz,
        # where float32 arithmetic would leave a DC error.
        y, self._zi = scipy.signal.sosfilt(self._sos, x, zi=self._zi)
        return y.astype(np.float32)

    def _emit(self, y: np.ndarray) -> np.ndarray:
        # Trim anything past the exact expected length (only possible at the very end).
        if self._flushed:
            room = self.expected_samples_out - self.samples_out
            y = y[: max(room, 0)]
        self.samples_out += len(y)
        return y


def downmix(block: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels), float or signed int PCM -> mono float32 (frames,),
    the mean of the channels, full scale 1.0.

    Mean, not sum: a stereo file with the same signal on both channels keeps its level,
    and the result never exceeds the loudest channel's peak.
    """
    x = np.asarray(block)
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim != 2:
        raise ValueError(f"block must be (frames,) or (frames, channels), got {x.shape}")
    if x.dtype.kind == "i":
        scale = 1.0 / float(2 ** (8 * x.dtype.itemsize - 1))
    elif x.dtype.kind == "f":
        scale = 1.0
    else:
        raise ValueError(f"unsupported sample dtype {x.dtype}")
    # Column adds, not x.mean(axis=1): numpy reduces a short last axis ~10x slower.
    y = x[:, 0].astype(np.float32)
    for c in range(1, x.shape[1]):
        y += x[:, c]
    y *= np.float32(scale / x.shape[1])
    return y


# libsndfile subtypes read as integers: no float conversion in libsndfile, no NaN possible.
_INT_READ = {
    "PCM_S8": "int16",
    "PCM_U8": "int16",
    "PCM_16": "int16",
    "PCM_24": "int32",
    "PCM_32": "int32",
}


def stream_conditioned(
    path: str | os.PathLike,
    out_rate: int,
    block_seconds: float = DEFAULT_BLOCK_SECONDS,
    *,
    info: AudioInfo | None = None,
    quality: str = DEFAULT_RESAMPLE_QUALITY,
    on_frames: Callable[[int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Yield the recording at ``path`` as consecutive mono float32 blocks at ``out_rate`` Hz.

    Reads ``block_seconds`` of input at a time (memory does not grow with file length).
    The blocks concatenate to exactly ``round(frames * out_rate / in_rate)`` samples.
    ``on_frames(n)`` is called with the input frames consumed after each block (progress).

    Raises :class:`AudioError` subclasses naming the file: unsupported, unreadable (also
    when decoding fails midway), empty, or containing NaN/Inf.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be > 0, got {block_seconds}")
    info = info or probe(path)
    blocksize = max(1, int(round(block_seconds * info.sample_rate)))
    dtype = _INT_READ.get(info.subtype, "float32")
    check_finite = dtype == "float32"
    cond = Conditioner(info.sample_rate, out_rate, quality=quality)
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                block = f.read(blocksize, dtype=dtype, always_2d=True)
                if len(block) == 0:
                    break
                if check_finite and not np.isfinite(block).all():
                    bad = int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                    t = (cond.frames_in + bad) / info.sample_rate
                    raise NonFiniteAudioError(path, f"NaN or Inf sample at {t:.3f} s")
                y = cond.process(block)
                if on_frames is not None:
                    on_frames(len(block))
                if len(y):
                    yield y
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        why = getattr(e, "error_string", None) or str(e)
        raise UnreadableAudioError(
            path, f"decoding failed after {cond.frames_in / info.sample_rate:.3f} s: {why}"
        ) from e
    if cond.frames_in == 0:
        raise EmptyAudioError(path, "no audio samples could be decoded")
    tail = cond.flush()
    if len(tail):
        yield tail


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


def prefetched(blocks: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """Run ``blocks`` (e.g. :func:`stream_conditioned`) in a background thread, ``depth``
    blocks ahead, so decoding + resampling overlap with whatever the caller does per block
    (loudness, FLAC encoding). libsndfile, soxr and numpy release the GIL, so one recording
    can use two cores. Order, values and exceptions are exactly those of ``blocks``;
    memory grows by at most ``depth`` blocks.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not put(block):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, re-raised there
            put(_Raised(e))

    worker = threading.Thread(target=produce, name="audio-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()


def load_conditioned(
    path: str | os.PathLike, out_rate: int, block_seconds: float = DEFAULT_BLOCK_SECONDS
) -> np.ndarray:
    """Whole recording as one mono float32 array at ``out_rate`` (for short files and tests;
    long files should be consumed with :func:`stream_conditioned`)."""
    blocks = list(stream_conditioned(path, out_rate, block_seconds))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
