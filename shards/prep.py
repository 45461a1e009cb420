"""Recordings in, loudness-normalised WebDataset shards out: ``prep_corpus``.

Flow::

    discover inputs (sorted) --> pool of workers, one recording each (shards.recording):
        stream_conditioned (shards.audio, decoding one block ahead in a thread)
        -> cut into chunks (shards.chunking)
        -> drop silence -> normalise + peak guard (shards.loudness) -> FLAC 24-bit
        -> spool file out_dir/.spool/<n>.spool
    main process, in input order: spool -> ShardSetWriter (train / val) -> delete spool
    -> report.json / report.md -> manifest.json (last)

Determinism: workers only compute; the main process consumes their results strictly in
input order, so keys, order and bytes do not depend on the worker count or on timing.
Bounded memory: a worker streams its recording block by block and writes each finished
chunk straight to its spool file, so nothing proportional to a recording's length ever
sits in memory or goes through a pipe.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from shards import audio, loudness
from shards.inputs import discover_inputs, header_duration
from shards.manifest import SPLITS, Manifest, SplitInfo
from shards.prep_process import kill_pool, terminate_on_sigterm, watch_parent
from shards.recording import Task, process_recording, read_spool
from shards.report import FileReport, build_report, format_summary, write_report
from shards.split import SplitConfig, Splitter
from shards.writer import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    ShardSetWriter,
    environment_errors,
    prepare_out_dir,
)
from telucodec.progress import progress as progress_bar

log = logging.getLogger("shards.prep")

SPOOL_DIR = ".spool"
DEFAULT_SPEAKER_REGEX = r"SPK[FM]\d+"


class PrepError(Exception):
    """prep_corpus could not produce a shard set (message says why)."""


@dataclass
class PrepConfig:
    """Everything that decides the content of a shard set (saved in the manifest).

    target_rate: Hz of stored audio. chunk_seconds: chunk length; min_chunk_seconds: a
    recording's last partial chunk is kept if at least this long (else "short_tail").
    loudness_target_lufs: BS.1770 integrated loudness of every kept chunk.
    peak_ceiling_dbfs: sample-peak ceiling of the peak guard. silence_floor_lufs: chunks
    quieter than this are dropped as silence. speaker_regex: recorded as ``speaker`` in
    chunk metadata when it matches the relative path. max_shard_samples / max_shard_bytes:
    shard size limits. workers: processes (None = all cores). block_seconds: input read
    size. resample_quality: soxr quality. flac_bits: 24 (default; quantisation noise far
    below any codec's) or 16 (half the shard size, noise ~ -98 dBFS: enough for training
    data and what carrying a corpus to a machine with a size limit needs). overwrite:
    replace an existing prep output.
    """

    target_rate: int = 16_000
    chunk_seconds: float = 10.0
    min_chunk_seconds: float = 1.0
    loudness_target_lufs: float = -26.0
    peak_ceiling_dbfs: float = -1.0
    silence_floor_lufs: float = -60.0
    split: SplitConfig = field(default_factory=SplitConfig)
    speaker_regex: str | None = DEFAULT_SPEAKER_REGEX
    max_shard_samples: int = DEFAULT_MAX_SAMPLES
    max_shard_bytes: int = DEFAULT_MAX_BYTES
    workers: int | None = None
    block_seconds: float = audio.DEFAULT_BLOCK_SECONDS
    resample_quality: str = audio.DEFAULT_RESAMPLE_QUALITY
    flac_bits: int = 24
    overwrite: bool = False

    def __post_init__(self):
        if isinstance(self.split, dict):
            self.split = SplitConfig(**self.split)
        if not audio.MIN_RATE_HZ <= self.target_rate <= audio.MAX_RATE_HZ:
            raise ValueError(
                f"target_rate={self.target_rate} must be in "
                f"{audio.MIN_RATE_HZ}-{audio.MAX_RATE_HZ} Hz"
            )
        if not self.min_chunk_seconds >= loudness.BLOCK_SECONDS:
            raise ValueError(
                f"min_chunk_seconds={self.min_chunk_seconds} must be >= "
                f"{loudness.BLOCK_SECONDS} (one BS.1770 gating block)"
            )
        if not self.chunk_seconds >= self.min_chunk_seconds:
            raise ValueError(
                f"chunk_seconds={self.chunk_seconds} must be >= "
                f"min_chunk_seconds={self.min_chunk_seconds}"
            )
        if not -70.0 < self.loudness_target_lufs < 0.0:
            raise ValueError(
                f"loudness_target_lufs={self.loudness_target_lufs} must be in (-70, 0)"
            )
        if not -20.0 <= self.peak_ceiling_dbfs <= 0.0:
            raise ValueError(f"peak_ceiling_dbfs={self.peak_ceiling_dbfs} must be in [-20, 0]")
        if not self.silence_floor_lufs < self.loudness_target_lufs:
            raise ValueError(
                f"silence_floor_lufs={self.silence_floor_lufs} must be below "
                f"loudness_target_lufs={self.loudness_target_lufs}"
            )
        if self.speaker_regex:
            try:
                re.compile(self.speaker_regex)
            except re.error as e:
                raise ValueError(f"speaker_regex {self.speaker_regex!r}: {e}") from e
        if self.max_shard_samples < 1:
            raise ValueError(f"max_shard_samples={self.max_shard_samples} must be >= 1")
        if self.max_shard_bytes < 2**20:
            raise ValueError(f"max_shard_bytes={self.max_shard_bytes} must be >= 1 MiB")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers={self.workers} must be >= 1 (or None for all cores)")
        if not self.block_seconds > 0:
            raise ValueError(f"block_seconds={self.block_seconds} must be > 0")
        if self.resample_quality not in ("HQ", "VHQ"):
            raise ValueError(f"resample_quality={self.resample_quality!r} must be HQ or VHQ")
        if self.flac_bits not in (16, 24):
            raise ValueError(f"flac_bits={self.flac_bits} must be 16 or 24")

    @property
    def num_workers(self) -> int:
        return self.workers or len(os.sched_getaffinity(0)) or 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("workers")  # how fast, not what: must not make manifests differ
        d.pop("overwrite")
        return d


# --- process pool plumbing (module level so it pickles) -------------------------------

_worker_state: dict = {}


def _init_worker(config: PrepConfig, splitter: Splitter, counter, parent_pid: int) -> None:
    watch_parent(parent_pid)  # a killed prep must not leave its workers running
    _worker_state.update(config=config, splitter=splitter, counter=counter)


def _worker_add_seconds(s: float) -> None:
    counter = _worker_state["counter"]
    with counter.get_lock():
        counter.value += s


def _run_task(task: Task) -> FileReport:
    return process_recording(
        task, _worker_state["config"], _worker_state["splitter"], _worker_add_seconds
    )


# --- the command ----------------------------------------------------------------------


@dataclass
class PrepResult:
    out_dir: Path
    manifest: Manifest
    report: dict
    files: list[FileReport]

    @property
    def summary(self) -> str:
        return format_summary(self.report)


def prep_corpus(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    config: PrepConfig | None = None,
    *,
    progress: bool = True,
) -> PrepResult:
    """Build a shard set in ``out_dir`` from ``inputs`` (folders searched recursively for
    .wav/.flac/.ogg/.mp3, audio files, or list files of paths).

    Bad recordings are logged (one line naming the file and reason), skipped and listed
    in the report. Raises :class:`PrepError` for unusable arguments or when nothing at all
    could be kept (the report is still written then, the manifest is not), and
    :class:`telucodec.errors.EnvironmentFault` (naming the path) when the machine refuses a
    write (no space, permission denied, read-only folder): the run stops there, with no
    manifest, instead of marking good recordings as rejected.

    A ``file`` split that would leave one side empty because all recordings form one group
    (one long recording, say) holds out time instead, as ``--split time`` does (see
    :func:`usable_split`); a split still left without validation data is said in the log and
    the report (``split_warning``), since training cannot run without it.
    """
    config = config or PrepConfig()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out_dir = Path(out_dir)
    skipped: list[tuple[str, str]] = []
    try:
        sources, bad_inputs = discover_inputs(inputs, skipped)
    except (FileNotFoundError, ValueError) as e:
        raise PrepError(str(e)) from e
    for path, why in skipped:
        log.warning("not searched: %s: %s", path, why)
    config, split_note = usable_split(config, sources)
    if split_note:
        log.warning("%s", split_note)
    splitter = Splitter(config.split)
    for entry in splitter.unmatched_list_entries([s.rel for s in sources]):
        log.warning("val list entry %r matches no input recording", entry)
    if not sources and not bad_inputs:
        raise PrepError(f"no recordings ({', '.join(audio.SUPPORTED_EXTENSIONS)}) in {inputs}")
    try:
        prepare_out_dir(out_dir, config.overwrite)
    except (FileExistsError, NotADirectoryError) as e:
        raise PrepError(str(e)) from e
    spool_dir = out_dir / SPOOL_DIR
    with environment_errors(spool_dir, "creating the spool folder"):
        spool_dir.mkdir()

    files: list[FileReport] = []
    for rel, path, reason in bad_inputs:
        rep = FileReport(source=rel, file_id="")
        rep.reject(reason, header_duration(path))
        log.warning("rejected %s: %s", rel, reason)
        files.append(rep)

    tasks = [Task(i, s, str(spool_dir / f"{i:08d}.spool")) for i, s in enumerate(sources)]
    total_hours = sum(header_duration(s.path) or 0.0 for s in sources) / 3600
    bar = progress_bar(
        total_hours,
        "prep",
        "h",
        disable=not progress,
        fmt="{:.2f}",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} h [{elapsed}<{remaining}]",
    )
    writers = {
        s: ShardSetWriter(
            out_dir, s, max_samples=config.max_shard_samples, max_bytes=config.max_shard_bytes
        )
        for s in SPLITS
    }
    level_stats: dict[str, list] = {"before": [], "after": [], "guard": []}
    try:
        with (
            terminate_on_sigterm(),
            contextlib.closing(_results(tasks, config, splitter, bar)) as results,
        ):
            for rep in results:
                _log_file(rep)
                if rep.spool:
                    for key, flac, meta, dur in read_spool(rep.spool):
                        writers[meta["split"]].write(key, flac, meta, dur)
                        level_stats["before"].append(meta["loudness_before_lufs"])
                        level_stats["after"].append(meta["loudness_after_lufs"])
                        level_stats["guard"].append(meta["peak_guard"])
                    Path(rep.spool).unlink()
                    rep.spool = None
                files.append(rep)
            shards = {s: w.close() for s, w in writers.items()}
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        bar.close()
        shutil.rmtree(spool_dir, ignore_errors=True)

    files.sort(key=lambda r: r.source)
    report = build_report(files, level_stats, config, skipped)
    report["split_note"] = split_note
    report["split_warning"] = split_warning({s: len(shards[s]) for s in SPLITS}, config)
    if report["split_warning"] and any(shards.values()):
        log.warning("%s", report["split_warning"])
    with environment_errors(out_dir, "writing the report"):
        write_report(out_dir, report)
    if not any(info for info in shards.values()):
        raise PrepError(
            f"nothing usable in the input: no chunk was kept (see {out_dir / 'report.md'})"
        )
    manifest = Manifest(
        sample_rate=config.target_rate,
        loudness_target_lufs=config.loudness_target_lufs,
        peak_ceiling_dbfs=config.peak_ceiling_dbfs,
        chunk_seconds=config.chunk_seconds,
        splits={s: SplitInfo(shards[s]) for s in SPLITS},
        prep_config=config.to_dict(),
    )
    with environment_errors(out_dir / "manifest.json", "writing the manifest"):
        manifest.save(out_dir)  # last: its presence means the shard set is complete
    return PrepResult(out_dir=out_dir, manifest=manifest, report=report, files=files)


def _log_file(rep: FileReport) -> None:
    """One line for a recording worth a word: rejected, nothing kept, length off."""
    if rep.status == "rejected":
        log.warning("rejected %s: %s", rep.source, rep.reason)
        return
    if rep.note:
        # Silence is worth a warning (a dead microphone?); a clip shorter than the
        # minimum is policy, listed in the report but not shouted about.
        level = logging.WARNING if rep.chunks_silence else logging.INFO
        log.log(level, "nothing kept from %s: %s", rep.source, rep.note)
    if rep.warning:
        log.warning("%s: %s", rep.source, rep.warning)


def usable_split(config: PrepConfig, sources: list) -> tuple[PrepConfig, str | None]:
    """``config`` with a split that can give both sides data, and a note when it changed.

    A ``file`` split (``val_fraction > 0``) whose recordings all share one group key (one
    long recording; one speaker with ``--group-regex``) sends everything to one side. Then
    the last ``min(val_seconds, max(chunk_seconds, val_fraction x mean duration))`` seconds
    of each recording are held out after the configured gap, as ``--split time`` does
    (recordings too short for that stay whole in training; when all are, the split is left
    as it was, and :func:`split_warning` says what came out empty).
    """
    s = config.split
    if s.mode != "file" or s.val_fraction <= 0 or not sources:
        return config, None
    splitter = Splitter(s)
    if len({splitter.group_key(src.rel) for src in sources}) > 1:
        return config, None
    durations = [header_duration(src.path) or 0.0 for src in sources]
    mean = sum(durations) / len(durations)
    val = min(s.val_seconds, max(config.chunk_seconds, s.val_fraction * mean))
    if max(durations) <= val + s.gap_seconds:  # too short to hold anything out
        return config, None
    timed = replace(s, mode="time", val_seconds=round(val, 3))
    note = (
        f"all {len(sources)} recording(s) form one group, so a file split would leave one side "
        f"empty: holding out the last {timed.val_seconds:g} s of each recording as validation "
        f"after a {s.gap_seconds:g} s gap instead (as --split time --val-seconds "
        f"{timed.val_seconds:g})"
    )
    return replace(config, split=timed), note


def split_warning(shard_counts: dict[str, int], config: PrepConfig) -> str | None:
    """A line saying which split came out empty and how to fix it, or None."""
    empty = [s for s in SPLITS if shard_counts.get(s, 0) == 0]
    if not empty or len(empty) == len(SPLITS):
        return None
    s = config.split
    if "val" in empty:
        how = (
            "recordings too short to hold out --val-seconds plus --gap-seconds: lower them"
            if s.mode == "time"
            else "use --split time --val-seconds N (few long recordings), a larger "
            "--val-fraction, or --val-list"
        )
        return f"the val split is empty: training validates on it and will refuse it ({how})"
    return (
        "the train split is empty: every recording went to validation "
        "(lower --val-fraction, or use --split time)"
    )


def _results(tasks: list[Task], config: PrepConfig, splitter: Splitter, bar):
    """FileReports in input order, from a process pool or (one worker/file) in-process."""
    workers = min(config.num_workers, len(tasks))
    if workers <= 1:
        for task in tasks:
            done_before = bar.n
            rep = process_recording(task, config, splitter, lambda s: bar.update(s / 3600))
            bar.n = done_before + (rep.duration_s or 0.0) / 3600
            bar.refresh()
            yield rep
        return
    # forkserver, not fork: the caller may hold threads (tqdm's monitor, torch) that a
    # forked child would inherit mid-lock.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["shards.prep"])  # workers fork with the imports done
    counter = ctx.Value("d", 0.0)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(config, splitter, counter, os.getpid()),
    )
    finished = False
    try:
        # All tasks are submitted up front (they are tiny); results are taken in input
        # order, which is what makes the output independent of the worker count.
        futures = [pool.submit(_run_task, t) for t in tasks]
        for task, fut in zip(tasks, futures, strict=True):
            while True:
                try:
                    rep = fut.result(timeout=0.5)
                    break
                except FuturesTimeout:
                    bar.n = counter.value / 3600
                    bar.refresh()
                except BrokenProcessPool as e:
                    raise PrepError(
                        f"a worker process died (last waiting on {task.source.rel}); "
                        "rerun with --workers 1 to find the file that crashes the decoder"
                    ) from e
            bar.n = counter.value / 3600
            bar.refresh()
            yield rep
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # an error, a signal or the consumer stopped: do not wait for recordings
            kill_pool(pool)
