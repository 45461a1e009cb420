"""Reader throughput: seconds of audio delivered per second, per DataLoader worker.

Bar (issue 2): at least 1000x real time per worker.

Builds (or takes, with ``--shards``) a shard set of ~30 min of 16 kHz speech-like audio in
10 s chunks, then times the training stream two ways:

* ``in-process``: one worker's whole job (tar reading, FLAC decoding, cropping, batching) run
  in this process, i.e. what each DataLoader worker does;
* ``DataLoader 1w``: a real ``make_train_loader`` with one worker, including the cost of
  handing batches to the main process. This is the per-worker figure the bar is checked on.
* ``DataLoader 2w total``: two workers, total delivered (not divided): on a 2-core machine
  they share the cores with the main process, so this shows the box's total, not a worker's.

Each timing is the best of 3 consecutive runs (neighbouring processes only slow a run).

Run from the repo root::

    .venv/bin/python -m benchmarks.bench_reader
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import itertools
import shlex
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import webdataset as wds

from benchmarks.machine import describe
from shards import synth
from shards.manifest import Manifest, ShardInfo, SplitInfo, load_manifest
from shards.reader import TrainStream, make_train_loader, resolve_shards


def build_shard_set(folder: Path, minutes: float, sample_rate: int, per_shard: int) -> Path:
    """Write ``minutes`` of 10 s chunks (24-bit FLAC) as train shards plus one val shard.

    The audio is :func:`shards.synth.speech_like` (one seed per chunk, about -23 dBFS RMS at
    its default peak): as hard for FLAC as speech, where pure tones or silence would decode
    unrealistically fast."""
    chunks = round(minutes * 60 / 10)
    infos = []
    for shard in range(0, chunks, per_shard):
        name = f"train-{shard // per_shard:06d}.tar"
        count = min(per_shard, chunks - shard)
        with wds.TarWriter(str(folder / name)) as sink:
            for i in range(count):
                buf = io.BytesIO()
                audio = synth.speech_like(10.0, sample_rate, seed=shard + i)
                sf.write(buf, audio, sample_rate, "PCM_24", format="FLAC")
                sink.write(
                    {"__key__": f"bench-c{shard + i:05d}", "flac": buf.getvalue(), "json": b"{}"}
                )
        infos.append(ShardInfo(name, count, 10.0 * count))
    buf = io.BytesIO()
    audio = synth.speech_like(10.0, sample_rate, seed=chunks)  # a seed no train chunk uses
    sf.write(buf, audio, sample_rate, "PCM_24", format="FLAC")
    with wds.TarWriter(str(folder / "val-000000.tar")) as sink:
        sink.write({"__key__": "bench-val", "flac": buf.getvalue(), "json": b"{}"})
    Manifest(
        sample_rate=sample_rate,
        loudness_target_lufs=-23.0,
        peak_ceiling_dbfs=-1.0,
        chunk_seconds=10.0,
        splits={
            "train": SplitInfo(infos),
            "val": SplitInfo([ShardInfo("val-000000.tar", 1, 10.0)]),
        },
    ).save(folder)
    return folder


def time_batches(batches, n: int, warmup: int, repeats: int = 3) -> float:
    """Seconds to pull ``n`` batches after ``warmup`` untimed ones: the best of ``repeats``
    consecutive runs, because other processes on a small shared machine only ever slow a
    run down."""
    for _ in itertools.islice(batches, warmup):
        pass
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in itertools.islice(batches, n):
            pass
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=Path, help="existing shard set (default: build one)")
    p.add_argument("--minutes", type=float, default=30.0, help="audio to build (minutes)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--segment-seconds", type=float, nargs="+", default=[1.0, 0.5])
    p.add_argument("--crops-per-chunk", type=int, nargs="+", default=[1, 8])
    p.add_argument("--batches", type=int, default=150, help="timed batches per run (best of 3)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.shards
        if folder is None:
            start = time.perf_counter()
            folder = build_shard_set(Path(tmp), args.minutes, 16000, per_shard=30)
            print(
                f"built {args.minutes:g} min of 10 s chunks in {time.perf_counter() - start:.1f} s"
            )
        manifest = load_manifest(folder)
        sr = manifest.sample_rate
        _, urls = resolve_shards(folder, "train")
        counts = [s.samples for s in manifest.splits["train"].shards]
        results = []
        for seg_s, crops in itertools.product(args.segment_seconds, args.crops_per_chunk):
            seg = round(seg_s * sr)
            per_batch = args.batch_size * seg / sr  # audio seconds per batch
            stream = TrainStream(
                urls,
                counts,
                batch_size=args.batch_size,
                segment_samples=seg,
                seed=0,
                crops_per_chunk=crops,
                sample_rate=sr,
            )
            wall = time_batches(stream.iter_worker(0, 0), args.batches, warmup=5)
            inproc = args.batches * per_batch / wall
            dl = [time_loader(folder, args, seg, crops, workers) * per_batch for workers in (1, 2)]
            results.append((seg_s, crops, inproc, *dl))
            print(
                f"segment {seg_s:g} s, crops_per_chunk {crops}: x real time: in-process "
                f"{inproc:,.0f}, DataLoader 1 worker {dl[0]:,.0f}, DataLoader 2 workers "
                f"{dl[1]:,.0f} total"
            )

    cmd = " ".join(
        shlex.quote(a)
        for a in [".venv/bin/python", "-m", "benchmarks.bench_reader", *(argv or sys.argv[1:])]
    )
    cells = "; ".join(f"{s:g} s x{c}: {a:,.0f} / {b:,.0f} / {t:,.0f}" for s, c, a, b, t in results)
    worst = min(r[3] for r in results)
    print()
    print(
        "| benchmark | date | machine | command | x real time (segment, crops per chunk: "
        "in-process / DataLoader 1w / DataLoader 2w total) | bar >= 1000x per worker |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| reader, batch {args.batch_size}, 16 kHz 10 s chunks, {args.minutes:g} min | "
        f"{dt.date.today()} | {describe()} | `{cmd}` | {cells} | "
        f"{'met' if worst >= 1000 else 'NOT met'} (worst DataLoader 1w: {worst:,.0f}x) |"
    )


def time_loader(
    folder: Path, args: argparse.Namespace, seg: int, crops: int, workers: int
) -> float:
    """Batches per second delivered by a real DataLoader with ``workers`` workers."""
    loader = make_train_loader(
        folder,
        batch_size=args.batch_size,
        segment_samples=seg,
        seed=0,
        num_workers=workers,
        crops_per_chunk=crops,
    )
    n = args.batches * workers
    return n / time_batches(iter(loader), n, warmup=5 * workers)


if __name__ == "__main__":
    main()
