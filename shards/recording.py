"""One recording in, its kept chunks out: the per-file half of ``prep_corpus``.

:func:`process_recording` runs in a prep worker: it streams one recording through the same
conditioning as inference (:mod:`shards.audio`), cuts it into chunks, drops silence,
normalises each chunk (:mod:`shards.loudness`) and appends every kept chunk, FLAC-encoded
with its :class:`ChunkMeta`, to the task's spool file, which the main process then copies
into the shards in input order (:func:`read_spool`). Every second of the recording ends up
in exactly one category of its :class:`shards.report.FileReport`.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import soundfile as sf

from shards import audio, loudness
from shards.audit import full_scale_runs
from shards.chunking import CHUNK, SHORT_TAIL, SPLIT_GAP, cut
from shards.inputs import Source, declared_wav_frames, header_duration
from shards.report import CATEGORIES, FileReport
from shards.split import Splitter
from telucodec.errors import environment_fault, is_environment_error


class RecordingSettings(Protocol):
    """The settings of :class:`shards.prep.PrepConfig` that one recording's processing
    reads, stated here so that this module does not import the one that imports it."""

    target_rate: int  # Hz
    speaker_regex: str | None
    block_seconds: float
    resample_quality: str
    chunk_seconds: float
    min_chunk_seconds: float
    silence_floor_lufs: float
    loudness_target_lufs: float
    peak_ceiling_dbfs: float
    flac_bits: int


@dataclass
class ChunkMeta:
    """The ``<key>.json`` of one stored chunk. Times are seconds in the *source* recording;
    loudness in LUFS; gain in dB; peak_after is the linear sample peak (full scale 1.0)."""

    source: str
    file_id: str
    chunk: int
    start_s: float
    end_s: float
    orig_rate: int
    orig_channels: int
    gain_db: float
    loudness_before_lufs: float
    loudness_after_lufs: float
    peak_after: float
    peak_guard: bool
    split: str
    speaker: str | None = None
    # runs of >= 3 consecutive |x| >= 0.999 samples before gain (after resampling): clipping
    source_clip_runs: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        if d["speaker"] is None:
            del d["speaker"]
        return d


def chunk_key(file_id: str, index: int) -> str:
    return f"{file_id}-c{index:05d}"


def encode_flac(x, rate: int, bits: int = 24) -> bytes:
    """Mono float32 (samples,) -> FLAC bytes, ``bits``-bit PCM (24: lossless for the stored
    level to ~ -144 dBFS; 16: ~ -98 dBFS, half the bytes)."""
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="FLAC", subtype=f"PCM_{bits}")
    return buf.getvalue()


@dataclass
class Task:
    index: int
    source: Source
    spool: str


def process_recording(
    task: Task,
    config: RecordingSettings,
    splitter: Splitter,
    on_seconds: Callable[[float], None] | None = None,
) -> FileReport:
    """Condition, cut, level and encode one recording into ``task.spool``.

    Returns its :class:`FileReport`. Never raises for bad audio: a recording that fails
    (even midway) is reported as rejected with all its seconds, and its spool is removed.
    Raises :class:`telucodec.errors.EnvironmentFault` (naming the spool file) when the
    machine refuses the spool write (no space, permission denied, read-only folder): that
    is no fault of the recording, and the run must stop rather than reject good audio.

    The recording's ``duration_s`` is what was decoded, not what the header says: MP3
    headers estimate their length (decoded MP3 is often a few ms shorter), and a WAV cut
    short on disk still declares its full length. A difference is kept in
    ``header_duration_s``, and one worth a look (:func:`length_warning`) in ``warning``.
    """
    src = task.source
    rep = FileReport(source=src.rel, file_id=src.file_id)
    try:
        info = audio.probe(src.path)
    except audio.AudioError as e:
        rep.reject(e.reason, header_duration(src.path))
        return rep
    rep.duration_s = info.duration_s
    rep.orig_rate, rep.orig_channels = info.sample_rate, info.channels
    rate = config.target_rate
    speaker = None
    if config.speaker_regex:
        m = re.search(config.speaker_regex, src.rel)
        speaker = m.group(0) if m else None
    frames_read = 0

    def progress(frames: int) -> None:
        nonlocal frames_read
        frames_read += frames
        if on_seconds is not None:
            on_seconds(frames / info.sample_rate)

    sec = dict.fromkeys(CATEGORIES, 0.0)
    try:
        with open(task.spool, "wb") as spool:
            blocks = audio.prefetched(
                audio.stream_conditioned(
                    src.path,
                    rate,
                    config.block_seconds,
                    info=info,
                    quality=config.resample_quality,
                    on_frames=progress,
                )
            )
            pieces = cut(
                blocks,
                splitter.regions(src.rel, info.duration_s),
                rate,
                chunk_samples=round(config.chunk_seconds * rate),
                min_samples=round(config.min_chunk_seconds * rate),
            )
            for piece in pieces:
                start_s = piece.start / rate
                # The last piece ends where the source ends, to the sample of the source:
                # this is what makes the per-file accounting sum to the input duration.
                end_s = frames_read / info.sample_rate if piece.final else piece.end / rate
                dur = end_s - start_s
                if piece.kind == SPLIT_GAP:
                    sec["split_gap"] += dur
                    continue
                if piece.kind == SHORT_TAIL:
                    sec["short_tail"] += dur
                    continue
                assert piece.kind == CHUNK
                powers = loudness.block_powers(piece.audio, rate)
                if loudness.gated_loudness(powers) < config.silence_floor_lufs:
                    sec["silence"] += dur
                    rep.chunks_silence += 1
                    continue
                out, lv = loudness.normalise(
                    piece.audio,
                    rate,
                    config.loudness_target_lufs,
                    config.peak_ceiling_dbfs,
                    powers=powers,
                )
                meta = ChunkMeta(
                    source=src.rel,
                    file_id=src.file_id,
                    chunk=piece.index,
                    start_s=round(start_s, 6),
                    end_s=round(end_s, 6),
                    orig_rate=info.sample_rate,
                    orig_channels=info.channels,
                    gain_db=round(lv.gain_db, 4),
                    loudness_before_lufs=round(lv.loudness_before, 4),
                    loudness_after_lufs=round(lv.loudness_after, 4),
                    peak_after=round(lv.peak_after, 6),
                    peak_guard=lv.peak_guard,
                    split=piece.split,
                    speaker=speaker,
                    source_clip_runs=full_scale_runs(piece.audio),
                )
                record = (
                    chunk_key(src.file_id, piece.index),
                    encode_flac(out, rate, config.flac_bits),
                    meta.to_json(),
                    dur,
                )
                pickle.dump(record, spool, protocol=pickle.HIGHEST_PROTOCOL)
                sec[f"kept_{piece.split}"] += dur
                rep.chunks_kept += 1
                rep.peak_guard_chunks += int(lv.peak_guard)
    except audio.AudioError as e:
        Path(task.spool).unlink(missing_ok=True)
        rep.reject(e.reason, info.duration_s)
        return rep
    except OSError as e:
        Path(task.spool).unlink(missing_ok=True)
        if is_environment_error(e):  # input reads fail as AudioError: this is the spool
            raise environment_fault(e, task.spool, "writing the spool file") from e
        rep.reject(f"processing failed: {type(e).__name__}: {e}", info.duration_s)
        return rep
    except Exception as e:  # a bug or an exotic decoder failure: still only this file
        Path(task.spool).unlink(missing_ok=True)
        rep.reject(f"processing failed: {type(e).__name__}: {e}", info.duration_s)
        return rep
    rep.seconds.update(sec)
    rep.spool = task.spool
    # every category above ends where decoding ended: that is the recording's length
    rep.duration_s = frames_read / info.sample_rate
    declared = declared_wav_frames(src.path) if info.format == "WAV" else None
    stated = max(info.frames, declared or 0)
    if stated != frames_read:
        rep.header_duration_s = stated / info.sample_rate
        rep.warning = length_warning(stated, frames_read, info.sample_rate)
    if rep.chunks_kept == 0:
        Path(task.spool).unlink(missing_ok=True)
        rep.spool = None
        if rep.chunks_silence:
            rep.note = f"all audio below the {config.silence_floor_lufs} LUFS silence floor"
        else:
            rep.note = f"shorter than min_chunk_seconds={config.min_chunk_seconds}"
    return rep


# A decoded length this far from the header's is worth a warning; smaller differences (an
# MP3 decoder's padding, a few ms) are only recorded in ``header_duration_s``.
LENGTH_WARN_SECONDS = 0.1
LENGTH_WARN_SHARE = 0.01


def length_warning(stated_frames: int, decoded_frames: int, rate: int) -> str | None:
    """A one-line note when the header's length (frames) and the decoded one differ by more
    than ``LENGTH_WARN_SECONDS`` and ``LENGTH_WARN_SHARE`` of the file, else None."""
    diff = abs(stated_frames - decoded_frames) / rate
    if diff <= LENGTH_WARN_SECONDS or diff <= LENGTH_WARN_SHARE * stated_frames / rate:
        return None
    what = "truncated or damaged file?" if decoded_frames < stated_frames else "bad header?"
    return (
        f"header says {stated_frames / rate:.3f} s but {decoded_frames / rate:.3f} s of audio "
        f"were decoded ({what}); counted as {decoded_frames / rate:.3f} s"
    )


def read_spool(path: str | os.PathLike):
    """Yield (key, flac_bytes, meta_dict, seconds) records from a spool file, in order."""
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return
