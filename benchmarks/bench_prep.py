"""Prep benchmark and real-data level check (issue 2 bars).

1. Speed and memory: a 2-hour 48 kHz stereo 16-bit WAV (generated block by block, or
   ``--wav``) through ``telucodec-prep`` in a fresh process. Bar: >= 300x real time
   overall (under 24 s, Python start-up and imports included) and peak RSS < 1 GiB.
   RSS is sampled over the whole process tree (the prep process and any workers, summed)
   every 20 ms; the kernel's max-RSS of the largest single process is printed too.
2. Real data (``--realdata DIR``, default ``../shared/data/telugu-emotion`` when present):
   every chunk within 0.5 LU of the target unless the peak guard acted, guard on < 10% of
   chunks, no sample at or beyond full scale, every input second accounted for; plus the
   per-chunk peak-to-loudness spread and the guard share other targets would have had.

Prints Markdown ready to paste into BENCHMARKS.md. Run from the repo root::

    .venv/bin/python -m benchmarks.bench_prep            # both parts
    .venv/bin/python -m benchmarks.bench_prep --skip-realdata
    .venv/bin/python -m benchmarks.bench_prep --skip-long --realdata ../shared/data/telugu-emotion
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import resource
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.machine import describe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REALDATA = (REPO / ".." / "shared" / "data" / "telugu-emotion").resolve()


def _tree_rss_bytes(pid: int) -> int:
    """Sum of RSS over ``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            with open(f"/proc/{entry}/statm") as f:
                rss[int(entry)] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def run_measured(cmd: list[str]) -> tuple[float, int, int, str]:
    """Run ``cmd``; return (wall s, peak tree RSS bytes, max single-process RSS bytes, out)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_bytes(proc.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{out}")
    max_single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return wall, peak, max_single, out


def read_chunks(out_dir: Path) -> list[dict]:
    """Every stored chunk, read back independently of the reader: tarfile + soundfile."""
    chunks = []
    for shard in sorted(out_dir.glob("*.tar")):
        with tarfile.open(shard) as tar:
            audio_by_key, meta_by_key = {}, {}
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                data = tar.extractfile(m).read()
                if ext == "flac":
                    audio_by_key[key] = sf.read(io.BytesIO(data), dtype="float64")[0]
                else:
                    meta_by_key[key] = json.loads(data)
        chunks += [{"audio": audio_by_key[k], "meta": meta_by_key[k]} for k in audio_by_key]
    return chunks


def bench_long(hours: float, wav: Path | None, workdir: Path) -> list[str]:
    from shards import audio, synth

    if wav is None:
        wav = workdir / "long_48k_stereo.wav"
    if not wav.exists():
        t = time.perf_counter()
        synth.write_long_wav(wav, hours, rate=48_000, channels=2)
        print(f"generated {wav} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    info = audio.probe(wav)
    out = workdir / "long_out"
    cmd = [sys.executable, "-m", "shards.cli", str(wav), "--out", str(out), "--quiet",
           "--overwrite"]  # fmt: skip
    wall, peak, single, log = run_measured(cmd)
    speed = info.duration_s / wall
    manifest = json.loads((out / "manifest.json").read_text())
    ok_speed, ok_mem = speed >= 300, peak < 2**30
    return [
        f"### Prep: {info.duration_s / 3600:.2f} h {info.sample_rate // 1000} kHz "
        f"{info.channels}-channel {info.subtype} WAV ({wav.stat().st_size / 2**30:.2f} GiB)",
        "",
        f"- command: `{shlex.join(cmd)}`",
        f"- wall time: **{wall:.1f} s** = **{speed:.0f}x real time** (process start-up and "
        f"imports included; bar >= 300x, under {info.duration_s / 300:.0f} s): "
        f"{'PASS' if ok_speed else 'FAIL'}",
        f"- peak RSS, whole process tree: **{peak / 2**20:.0f} MiB** (bar < 1024 MiB): "
        f"{'PASS' if ok_mem else 'FAIL'}; largest single process (kernel max-RSS): "
        f"{single / 2**20:.0f} MiB",
        f"- output: {manifest['total_samples']} chunks, {manifest['total_seconds']:.0f} s, "
        f"{sum(len(s['shards']) for s in manifest['splits'].values())} shards",
    ]


def bench_realdata(folder: Path, workdir: Path) -> list[str]:
    from shards.loudness import integrated_loudness
    from shards.prep import PrepConfig, prep_corpus

    config = PrepConfig()
    out = workdir / "realdata_out"
    t = time.perf_counter()
    result = prep_corpus(folder, out, PrepConfig(overwrite=True), progress=False)
    wall = time.perf_counter() - t
    samples = read_chunks(out)
    target, ceiling_db = config.loudness_target_lufs, config.peak_ceiling_dbfs
    guard = np.array([s["meta"]["peak_guard"] for s in samples])
    measured = np.array([integrated_loudness(s["audio"], 16_000) for s in samples])
    off_target = np.abs(measured - target)[~guard]
    max_abs = max(float(np.max(np.abs(s["audio"]))) for s in samples)
    # Peak-to-loudness ratio of each chunk before gain: what decides the guard.
    plr = np.array(
        [
            20 * np.log10(s["meta"]["peak_after"]) - s["meta"]["gain_db"]
            - s["meta"]["loudness_before_lufs"]
            for s in samples
        ]
    )  # fmt: skip
    before = np.array([s["meta"]["loudness_before_lufs"] for s in samples])
    rep = result.report
    total_in = rep["input"]["seconds"]
    accounted = sum(rep["seconds"].values())
    lines = [
        f"### Prep on `{folder.name}` ({rep['input']['files']} files, {total_in / 60:.1f} min)",
        "",
        f"- command: `prep_corpus({folder.name!r}, out, PrepConfig())` "
        f"(defaults: {target} LUFS, {ceiling_db} dBFS ceiling, {config.chunk_seconds} s "
        f"chunks, {config.min_chunk_seconds} s minimum); {wall:.1f} s, "
        f"{config.num_workers} workers",
        f"- chunks kept: {len(samples)}; peak guard acted on **{int(guard.sum())} "
        f"({100 * guard.mean():.1f}%)** (bar < 10%): {'PASS' if guard.mean() < 0.1 else 'FAIL'}",
        f"- unguarded chunks, |measured loudness - target|: max **{off_target.max():.4f} LU** "
        f"(bar 0.5 LU): {'PASS' if off_target.max() < 0.5 else 'FAIL'}",
        f"- max |sample| over all stored audio: **{max_abs:.4f}** "
        f"({20 * np.log10(max_abs):.2f} dBFS; bar < 1.0): {'PASS' if max_abs < 1 else 'FAIL'}",
        f"- seconds: input {total_in:.3f}; kept {rep['seconds']['kept_train']:.3f} train + "
        f"{rep['seconds']['kept_val']:.3f} val; silence {rep['seconds']['silence']:.3f}; "
        f"short tails {rep['seconds']['short_tail']:.3f}; split gaps "
        f"{rep['seconds']['split_gap']:.3f}; rejected {rep['seconds']['rejected']:.3f}; "
        f"sum - input = {accounted - total_in:.2e} s: "
        f"{'PASS' if abs(accounted - total_in) < 1e-3 else 'FAIL'}",
        f"- chunk loudness before normalisation (LUFS): p10 {np.percentile(before, 10):.1f} / "
        f"p50 {np.median(before):.1f} / p90 {np.percentile(before, 90):.1f} "
        f"(spread min-max {before.max() - before.min():.1f} LU)",
        f"- per-chunk peak minus loudness (dB): p10 {np.percentile(plr, 10):.1f} / p50 "
        f"{np.median(plr):.1f} / p90 {np.percentile(plr, 90):.1f} / max {plr.max():.1f}",
        "- guard share per target at a -1 dBFS ceiling (chunks, same data): "
        + ", ".join(
            f"{t} LUFS {100 * np.mean(plr > ceiling_db - t):.1f}%" for t in (-16, -20, -23, -26)
        ),
    ]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--wav", type=Path, default=None, help="use this WAV (generated if missing)")
    p.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    p.add_argument("--skip-long", action="store_true")
    p.add_argument("--skip-realdata", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_prep_") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        lines = [
            f"## Prep benchmark ({dt.date.today().isoformat()})",
            "",
            f"- machine: {describe()}",
            f"- command: `{shlex.join([Path(sys.executable).name, '-m', 'benchmarks.bench_prep', *sys.argv[1:]])}`",
            "",
        ]
        if not args.skip_long:
            lines += bench_long(args.hours, args.wav, work) + [""]
        if not args.skip_realdata:
            if args.realdata.is_dir():
                lines += bench_realdata(args.realdata, work)
            else:
                lines.append(f"(real-data check skipped: {args.realdata} not found)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
