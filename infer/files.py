"""Files through the codec, many at a time: windows of several files share each forward pass.

The windows of all inputs form one stream, file after file (:mod:`infer.blocks`), cut into
batches of ``batch_windows`` (:mod:`infer.batch`), so a batch may hold the end of one file
and the start of the next and a GPU stays full even on a folder of short clips. Reading,
conditioning and loudness metering run in a background thread
(:func:`shards.audio.prefetched`) ahead of the model. Results come back file by file, in
input order, as each file's last window is done; a bad input is reported in its
:class:`FileResult` and the others go on. Memory: one batch of windows plus the codes of
the file being encoded (a few bytes per frame).

Writing an output is the machine's business, not the input's: a full disk, a read-only or
forbidden folder raises :class:`telucodec.errors.EnvironmentFault` naming the output path
(libsndfile itself only says "System error."), and the run stops there.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
from torch import nn

from infer import batch
from infer import blocks as blk
from infer.codefile import CodeFile, CodeFileError
from infer.level import LevelPlan, LoudnessMeter, plan_gain
from infer.restore import Restorer
from shards import audio
from telucodec.errors import EnvironmentFault, environment_fault

Job = tuple[Path, Path | None]  # (input, output or None = do not write)


class CodecRunner(Protocol):
    """What these functions use of :class:`infer.api.TeluCodec` (which passes itself in):
    stated here so that this module does not import the one that imports it."""

    codec: nn.Module
    sample_rate: int  # Hz
    loudness_target_lufs: float
    peak_ceiling_dbfs: float
    hop: int  # samples per code frame
    tail: int  # the decoder's shortfall: F frames decode to F * hop - tail samples
    block_frames: int
    batch_windows: int
    enc_context: int  # frames
    dec_context: int  # frames

    def make_codefile(
        self,
        codes: np.ndarray,
        n_samples: int,
        orig_rate: int,
        orig_frames: int,
        orig_channels: int,
        plan: LevelPlan,
    ) -> CodeFile: ...

    def checked_codes(
        self, code: CodeFile, n_quantizers: int | None = None, name: str = "code file"
    ) -> np.ndarray: ...

    def output_rate(self, code: CodeFile, rate: str | int = "input") -> int: ...


@dataclass
class FileResult:
    """One input's outcome: ``code`` (the code file written or decoded) or ``error``."""

    source: Path
    output: Path | None
    code: CodeFile | None = None
    error: Exception | None = None

    def raise_error(self) -> CodeFile:
        """The code file, or raise the error this input met."""
        if self.error is not None:
            raise self.error
        assert self.code is not None
        return self.code

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.source}: FAILED: {self.error}"
        return f"{self.source} -> {self.output}: {self.code.duration_s:.2f} s"


def output_fault(exc: Exception, path: Path, doing: str) -> EnvironmentFault:
    """An EnvironmentFault naming ``path`` for an OSError or a libsndfile write error
    (which carries no errno: a folder with no space left is then named as the cause)."""
    if isinstance(exc, OSError) and exc.errno:
        return environment_fault(exc, path, doing)
    try:
        st = os.statvfs(path.parent)
        full = st.f_bavail * st.f_frsize < 2**20
    except OSError:
        full = False
    reason = os.strerror(errno.ENOSPC) if full else f"libsndfile: {exc}"
    return EnvironmentFault(
        f"{path}: {doing} failed: {reason}", path, errno.ENOSPC if full else None
    )


def plan_outputs(
    paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, ext: str
) -> list[Job]:
    """``(input, out_dir/<stem><ext>)`` for each input; ValueError when two inputs would
    write the same output. Creates ``out_dir``."""
    out = Path(out_dir)
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for p in map(Path, paths):
        dst = out / (p.stem + ext)
        if dst in seen:
            raise ValueError(f"{seen[dst]} and {p} would both be written to {dst}")
        seen[dst] = p
        jobs.append((p, dst))
    if not jobs:
        raise ValueError("no input files")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_fault(e, out, "creating the output folder") from e
    return jobs


def _failed(jobs: list[Job], errors: dict, start: int, stop: int) -> Iterator[FileResult]:
    """Results for inputs ``start..stop-1``, which ended without a last window."""
    for k in range(start, stop):
        err = errors.get(k) or RuntimeError(f"{jobs[k][0]}: produced no output")
        yield FileResult(jobs[k][0], jobs[k][1], error=err)


# ---- encode ---------------------------------------------------------------------------


def measure(tc: CodecRunner, path: Path, info: audio.AudioInfo) -> tuple[LevelPlan, int]:
    """First pass over an input: the level plan (prep's rule) and its length at the model
    rate, streamed (reading overlaps the metering)."""
    meter = LoudnessMeter(tc.sample_rate)
    for b in audio.prefetched(audio.stream_conditioned(path, tc.sample_rate, info=info)):
        meter.push(b)
    plan = plan_gain(meter.powers(), meter.peak, tc.loudness_target_lufs, tc.peak_ceiling_dbfs)
    return plan, meter.samples


def encode_jobs(tc: CodecRunner, jobs: list[tuple], n_q: int) -> Iterator[FileResult]:
    """Encode each ``(input, output or None)``; see the module docstring."""
    jobs = [(Path(s), None if d is None else Path(d)) for s, d in jobs]
    meta: dict[int, tuple] = {}
    errors: dict[int, Exception] = {}

    def windows() -> Iterator[blk.Window]:  # runs in the prefetch thread
        for key, (src, _) in enumerate(jobs):
            try:
                info = audio.probe(src)
                plan, n = measure(tc, src, info)
                meta[key] = (info, plan, n)
                stream = audio.stream_conditioned(src, tc.sample_rate, info=info)
                yield from blk.audio_windows(stream, tc.hop, tc.block_frames, tc.enc_context,
                                             plan.gain, key, tail=tc.tail)  # fmt: skip
                if n == 0:
                    raise audio.EmptyAudioError(src, "no samples at the model's rate")
            except audio.AudioError as e:
                errors[key] = e

    codes: dict[int, list[np.ndarray]] = defaultdict(list)
    done = 0  # inputs before this one have been reported
    stream = audio.prefetched(windows(), depth=2 * tc.batch_windows)
    for w, c in batch.run(tc.codec, stream, tc.batch_windows, n_q):
        codes[w.key].append(c)
        if not w.last:
            continue
        yield from _failed(jobs, errors, done, w.key)
        info, plan, n = meta[w.key]
        src, dst = jobs[w.key]
        cf = tc.make_codefile(np.concatenate(codes.pop(w.key), axis=1), n, info.sample_rate,
                              info.frames, info.channels, plan)  # fmt: skip
        if dst is not None:
            cf.save(dst)  # a refused write is an EnvironmentFault naming dst
        yield FileResult(src, dst, cf)
        done = w.key + 1
        codes.clear()  # drops the partial codes of any input that failed midway
    yield from _failed(jobs, errors, done, len(jobs))


# ---- decode ---------------------------------------------------------------------------


class AudioWriter:
    """Streams one code file's decoded windows into an audio file (written to a ``.part``
    file, renamed when complete). ``subtype``: soundfile subtype (default FLOAT for WAV,
    so restored peaks above full scale survive; PCM_24 for FLAC, which clips them, with a
    warning)."""

    def __init__(self, path: Path, code: CodeFile, rate: int, subtype: str | None = None):
        self.path = path
        fmt = path.suffix.lstrip(".").upper() or "WAV"
        self.subtype = subtype or ("PCM_24" if fmt == "FLAC" else "FLOAT")
        if not sf.check_format(fmt, self.subtype):
            raise ValueError(f"{path}: cannot write {fmt} with subtype {self.subtype}")
        self.restore = Restorer(code, rate)
        self.tmp = path.with_name(path.name + ".part")
        try:
            open(self.tmp, "wb").close()  # an OSError with its errno, where libsndfile has none
            self.file = sf.SoundFile(self.tmp, "w", rate, 1, subtype=self.subtype, format=fmt)
        except (OSError, sf.LibsndfileError) as e:
            self.tmp.unlink(missing_ok=True)
            raise output_fault(e, self.tmp, "writing the decoded audio") from e
        self.peak = 0.0

    def _put(self, y: np.ndarray) -> None:
        if len(y):
            self.peak = max(self.peak, float(np.abs(y).max()))
            try:
                self.file.write(y)
            except (OSError, sf.LibsndfileError) as e:
                raise output_fault(e, self.tmp, "writing the decoded audio") from e

    def write(self, y: np.ndarray) -> None:
        """One decoded window core (model rate, training level)."""
        self._put(self.restore.push(y))

    def close(self) -> None:
        self._put(self.restore.finish())
        try:
            self.file.close()
            os.replace(self.tmp, self.path)
        except (OSError, sf.LibsndfileError) as e:
            raise output_fault(e, self.tmp, "writing the decoded audio") from e
        if self.peak > 1.0 and not self.subtype.startswith(("FLOAT", "DOUBLE")):
            warnings.warn(
                f"{self.path}: peak {self.peak:.4f} exceeds full scale and was clipped by "
                f"{self.subtype}; write a .wav (32-bit float) to keep it",
                stacklevel=3,
            )

    def abort(self) -> None:
        try:
            self.file.close()
        except (OSError, sf.LibsndfileError):
            pass  # the disk may still be full: the part file goes anyway
        self.tmp.unlink(missing_ok=True)


def decode_jobs(
    tc: CodecRunner,
    jobs: list[tuple],
    n_quantizers: int | None = None,
    rate: str | int = "input",
    subtype: str | None = None,
) -> Iterator[FileResult]:
    """Decode each ``(code file, audio output)``; see the module docstring and
    :meth:`infer.api.TeluCodec.output_rate` for ``rate``."""
    jobs = [(Path(s), Path(d)) for s, d in jobs]
    meta: dict[int, tuple[CodeFile, int]] = {}
    errors: dict[int, Exception] = {}

    def windows() -> Iterator[blk.Window]:  # runs in the prefetch thread
        for key, (src, _) in enumerate(jobs):
            try:
                code = CodeFile.load(src)
                codes = tc.checked_codes(code, n_quantizers, str(src))
                if code.n_frames == 0:
                    raise CodeFileError(f"{src}: holds no frames")
                meta[key] = (code, tc.output_rate(code, rate))
            except (CodeFileError, ValueError) as e:
                errors[key] = e
                continue
            yield from blk.code_windows(codes, tc.block_frames, tc.dec_context, key)

    done, writer = 0, None
    stream = audio.prefetched(windows(), depth=2 * tc.batch_windows)
    try:
        for w, y in batch.run(tc.codec, stream, tc.batch_windows):
            if writer is None:
                yield from _failed(jobs, errors, done, w.key)
                writer = AudioWriter(jobs[w.key][1], *meta[w.key], subtype=subtype)
            writer.write(y)
            if w.last:
                writer.close()
                writer = None
                yield FileResult(*jobs[w.key], meta[w.key][0])
                done = w.key + 1
    finally:
        if writer is not None:
            writer.abort()
    yield from _failed(jobs, errors, done, len(jobs))
