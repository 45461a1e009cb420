"""Inference benchmark: payload vs nominal bitrate, real-time factor per speed option and per
window size, batched throughput (CPU, and GPU when there is one), a long-file round trip.

    python -m benchmarks.bench_infer [--preset configs/telugu16k.yaml] [--seconds 10]
        [--options fp32,fp32+compile,bf16,bf16+compile] [--blocks 2.5,10,20] [--thread-counts 1]
        [--batches 1,4,16] [--long-hours 2 --long-preset configs/cpu.yaml]
        [--long-model EXPORT_DIR --long-source SHARD_DIR]

Weights are random (a fresh build exported with :func:`codec.export_format.export_state_dict`):
speed, memory, sizes and levels do not depend on training.

1. Payload bytes of code files against bitrate x duration.
2. Encode + decode real-time factor of ``--preset`` for each speed option
   (:func:`infer.fast.prepare`), each in a fresh process so the first call's cost
   (torch.compile) and the peak RSS are the option's own; the decoded audio is compared
   with the default (fp32) decoding of the same codes (SNR, dB).
3. The same for each ``--blocks`` window size (context overhead vs memory) and each
   ``--thread-counts`` (fp32).
4. Batched throughput: ``--batches`` windows per forward pass on the CPU, and (1, 4, 16,
   64) on cuda when present.
5. ``--long-hours`` of 16 kHz audio through ``encode_file`` / ``decode_file`` in a child
   process (peak RSS from VmHWM); output length and loudness against the input's, and the
   stored gain. The audio is generated, or with ``--long-source`` the validation split of
   a shard folder (held-out speakers) cycled with a gain per 30 s block. With random
   weights the decoder does not reproduce its input's level, so the end-to-end loudness
   bar (within 0.5 LU) is judged only with ``--long-model`` (a trained export); the
   restoration step itself (an exact inverse gain) is what tests/infer checks.

Prints Markdown for BENCHMARKS.md, with the 1-minute load average next to each timing
(other jobs on the machine slow every figure down).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks.machine import describe, peak_rss_gib
from codec.build import build_codec
from codec.export_format import export_state_dict
from infer.api import TeluCodec
from infer.codefile import HEADER_BYTES
from infer.level import LoudnessMeter
from shards import loudness, synth
from trainer.config import load_config

OPTIONS = {
    "fp32": {},
    "fp32+compile": {"compile": True},
    "bf16": {"precision": "bf16"},
    "bf16+compile": {"precision": "bf16", "compile": True},
}
GPU_BATCHES = (1, 4, 16, 64)


def load_avg() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def make_export(preset: str, out: Path) -> Path:
    cfg = load_config(preset)
    torch.manual_seed(0)
    export_state_dict(build_codec(cfg.codec).state_dict(), cfg.codec, -26.0, -1.0, out)
    return out


def file_loudness(path: Path, rate: int) -> tuple[float, int]:
    """BS.1770 loudness of a (mono, ``rate`` Hz) file, streamed; and its length."""
    meter = LoudnessMeter(rate)
    for b in sf.blocks(str(path), blocksize=rate * 30, dtype="float32"):
        meter.push(b if b.ndim == 1 else b.mean(1))
    return loudness.gated_loudness(meter.powers()), meter.samples


def payload_table(tc: TeluCodec) -> list[str]:
    """Payload bytes against the bits of the frames held (packing overhead) and against
    ``seconds * kbps`` (which also counts the extra frame a signal ending within the
    decoder's ``tail`` of a frame boundary needs, as these whole-second signals do)."""
    rows = [
        "| n_q | kbps | seconds | frames | payload bytes | frames' bytes | packing "
        "| seconds x kbps / 8 | vs seconds x kbps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seconds in (10.0, 60.0):
        x = synth.speech_like(seconds, tc.sample_rate, seed=1)
        cf = tc.encode(x, tc.sample_rate, n_quantizers=tc.n_codebooks)
        for n in sorted({1, tc.default_n_quantizers, tc.n_codebooks}):
            cf_n = type(cf)(**{**cf.__dict__, "codes": cf.codes[:n]})
            got = len(cf_n.to_bytes()) - HEADER_BYTES
            held = math.ceil(cf.n_frames * n * cf.bits / 8)  # whole bytes: <= 7 pad bits
            nominal = tc.bitrate_kbps(n) * 1000 * seconds / 8
            rows.append(f"| {n} | {tc.bitrate_kbps(n):g} | {seconds:g} | {cf.n_frames} | {got} | "
                        f"{held} | {100 * (got - held) / held:+.2f}% | {nominal:.0f} | "
                        f"{100 * (got - nominal) / nominal:+.2f}% |")  # fmt: skip
    return rows


def rtf(tc: TeluCodec, x: np.ndarray, n_q: int) -> dict:
    """Encode then decode ``x`` (at the model rate); the first call on 1 s (warm-up,
    torch.compile) is timed apart."""
    rate = tc.sample_rate
    t0 = time.perf_counter()
    tc.decode(tc.encode(x[:rate], rate, n_q))
    t1 = time.perf_counter()
    cf = tc.encode(x, rate, n_q)
    t2 = time.perf_counter()
    y = tc.decode(cf)
    t3 = time.perf_counter()
    seconds = len(x) / rate
    return {"first_s": t1 - t0, "encode_x": seconds / (t2 - t1), "decode_x": seconds / (t3 - t2),
            "total_x": seconds / (t3 - t1), "codes": cf, "audio": y}  # fmt: skip


# ---- child processes -------------------------------------------------------------------


def _run_child(*args: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_infer", "--_child", *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"child {args[0]} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def rtf_child(export: str, spec: str, out_npz: str) -> None:
    """One speed option / window size in a fresh process: RTF, first call, peak RSS; the
    codes and decoded audio go to ``out_npz`` (so the parent can compare options)."""
    s = json.loads(spec)
    torch.set_num_threads(s["threads"])
    t0 = time.perf_counter()
    tc = TeluCodec.load(export, "cpu", s["block_seconds"], 1, **s["options"])
    load_s = time.perf_counter() - t0
    x = synth.speech_like(s["seconds"], tc.sample_rate, seed=2)
    r = rtf(tc, x, s["n_q"])
    np.savez(out_npz, codes=r.pop("codes").codes, audio=r.pop("audio"))
    r.update(load_s=load_s, maxrss_mib=peak_rss_gib() * 1024,
             load=load_avg())  # fmt: skip
    print(json.dumps(r))


def long_child(export: str, wav: str, tcc: str, out: str, threads: int) -> None:
    """Runs in a fresh process so the peak RSS is this round trip's own."""
    torch.set_num_threads(threads)
    tc = TeluCodec.load(export)
    t0 = time.perf_counter()
    cf = tc.encode_file(wav, tcc)
    t1 = time.perf_counter()
    tc.decode_file(tcc, out)
    t2 = time.perf_counter()
    print(json.dumps({"gain_db": cf.gain_db, "loudness_in": cf.loudness_lufs,
                      "encode_s": t1 - t0, "decode_s": t2 - t1, "load": load_avg(),
                      "maxrss_mib": peak_rss_gib() * 1024}))  # fmt: skip


# ---- sections ----------------------------------------------------------------------------


def snr_db(ref: np.ndarray, y: np.ndarray) -> float:
    err = float(np.sum((y.astype(np.float64) - ref) ** 2))
    return (
        float("inf")
        if err == 0
        else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err)
    )


OPTION_HEADER = [
    "| option | block s | threads | audio s | encode | decode | encode+decode | first call s "
    "| peak RSS MiB | codes same | decode SNR vs first row | load |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def option_rows(export: Path, runs: list[tuple], seconds: float, args, tmp: Path) -> list[str]:
    """One row per ``(option, block seconds, threads)``, each in a fresh process, on the
    same ``seconds`` of audio; codes and decoded audio compared with the first row's."""
    rows, ref = [], None
    for opt, block, threads in runs:
        spec = {"options": OPTIONS[opt], "block_seconds": block, "seconds": seconds,
                "n_q": args.n_q, "threads": threads}  # fmt: skip
        npz = tmp / f"run{len(list(tmp.glob('run*.npz')))}.npz"
        r = _run_child("rtf", str(export), json.dumps(spec), str(npz))
        out = np.load(npz)
        ref = out if ref is None else ref
        same = float(np.mean(out["codes"] == ref["codes"]))
        rows.append(f"| {opt} | {block:g} | {threads} | {seconds:g} | {r['encode_x']:.2f}x | "
                    f"{r['decode_x']:.2f}x | {r['total_x']:.2f}x | {r['first_s']:.1f} | "
                    f"{r['maxrss_mib']:.0f} | {same:.4f} | "
                    f"{snr_db(ref['audio'], out['audio']):.1f} dB | {r['load']} |")  # fmt: skip
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def option_table(export: Path, args, tmp: Path) -> list[str]:
    """RTF per speed option and thread count (``--seconds``), then per window size
    (``--block-audio`` seconds, so that every size holds several windows)."""
    runs = [(o, args.block_seconds, args.threads) for o in args.options]
    runs += [("fp32", args.block_seconds, t) for t in args.thread_counts if t != args.threads]
    rows = [*OPTION_HEADER, *option_rows(export, runs, args.seconds, args, tmp)]
    if args.blocks:
        blocks = [args.block_seconds, *(b for b in args.blocks if b != args.block_seconds)]
        runs = [("fp32", b, args.threads) for b in blocks]
        rows += ["", *OPTION_HEADER, *option_rows(export, runs, args.block_audio, args, tmp)]
    return rows


def batch_table(export: Path, device: str, batches: list[int], args) -> list[str]:
    """Throughput of ``max(batches)`` windows of audio at each batch size."""
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # every window has the same shape
    rows = ["| device | windows per batch | audio s | encode | decode | encode+decode | load |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    seconds = max(batches) * args.block_seconds
    x = synth.speech_like(seconds, 16000, seed=4)
    for b in batches:
        tc = TeluCodec.load(export, device, args.block_seconds, b)
        r = rtf(tc, x, args.n_q)
        rows.append(f"| {device} | {b} | {seconds:g} | {r['encode_x']:.1f}x | "
                    f"{r['decode_x']:.1f}x | {r['total_x']:.1f}x | {load_avg()} |")  # fmt: skip
        print(rows[-1], file=sys.stderr, flush=True)
        del tc
    return rows


def long_round_trip(
    export: Path, hours: float, threads: int, tmp: Path, source: Path | None = None
) -> dict:
    pool = None
    if source is not None:  # held-out speech, end to end
        from shards.reader import iter_validation

        pool = np.concatenate([item.audio.reshape(-1).numpy() for item in iter_validation(source)])
    wav = synth.write_long_wav(tmp / "long.wav", hours, rate=16000, channels=1, seed=3, pool=pool)
    tcc, out = tmp / "long.tcc", tmp / "long_out.wav"
    res = _run_child("long", str(export), str(wav), str(tcc), str(out), str(threads))
    res["loudness_in_measured"], res["len_in"] = file_loudness(wav, 16000)
    res["loudness_out"], res["len_out"] = file_loudness(out, 16000)
    res["hours"] = hours
    return res


def long_lines(r: dict, model: str, source: str, trained: bool) -> list[str]:
    total = r["encode_s"] + r["decode_s"]
    delta = r["loudness_out"] - r["loudness_in_measured"]
    if trained:
        verdict = f"within 0.5 LU: **{'met' if abs(delta) <= 0.5 else 'not met'}**"
    else:
        verdict = (
            "random weights: the decoder does not reproduce its input's level; restoration "
            "itself is exact, see tests/infer"
        )
    return [
        "",
        f"Long file: {r['hours']:g} h of 16 kHz {source}, {model}, "
        "`encode_file` + `decode_file` in a child process:",
        "",
        f"- peak RSS {r['maxrss_mib']:.0f} MiB; encode {r['encode_s']:.0f} s, decode "
        f"{r['decode_s']:.0f} s ({r['hours'] * 3600 / total:.1f}x real time, load {r['load']})",
        f"- length in {r['len_in']} samples, out {r['len_out']} samples",
        f"- loudness in {r['loudness_in_measured']:.2f} LUFS (header {r['loudness_in']:.2f}), "
        f"gain {r['gain_db']:+.2f} dB, out {r['loudness_out']:.2f} LUFS "
        f"({delta:+.2f} LU; {verdict})",
    ]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.replace(",", " ").split()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_child":
        if argv[1] == "rtf":
            rtf_child(*argv[2:5])
        else:
            long_child(*argv[2:6], int(argv[6]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="configs/telugu16k.yaml")
    p.add_argument("--seconds", type=float, default=10.0, help="audio for the RTF runs")
    p.add_argument("--n-q", type=int, default=8, help="codebooks for the timing runs")
    p.add_argument("--block-seconds", type=float, default=5.0)
    p.add_argument("--options", default=",".join(OPTIONS), help=f"of {', '.join(OPTIONS)}")
    p.add_argument("--blocks", default="2.5,10,20", help="window sizes (s) to compare, fp32")
    p.add_argument("--block-audio", type=float, default=60.0, help="audio for the --blocks runs")
    p.add_argument("--thread-counts", default="1", help="thread counts to compare, fp32")
    p.add_argument("--batches", default="1,4,16", help="windows per batch on the CPU ('' = skip)")
    p.add_argument("--long-hours", type=float, default=2.0, help="0 = skip the long run")
    p.add_argument("--long-preset", default="configs/cpu.yaml", help="random weights of this")
    p.add_argument("--long-model", type=Path, default=None, help="a trained export instead")
    p.add_argument(
        "--long-source", type=Path, default=None, help="shard folder: its val split as audio"
    )
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    args.options = [o for o in args.options.split(",") if o]
    bad = [o for o in args.options if o not in OPTIONS]
    if bad or (args.options and args.options[0] != "fp32"):
        p.error(f"--options: start with fp32 (the reference), then any of {list(OPTIONS)}")
    args.blocks = _floats(args.blocks)
    args.thread_counts = [int(t) for t in _floats(args.thread_counts)]
    torch.set_num_threads(args.threads)
    print("\n".join([
        f"### Inference ({datetime.date.today().isoformat()})",
        "",
        f"Command: `python -m benchmarks.bench_infer {shlex.join(argv)}`".rstrip() + "  ",
        f"Machine: {describe()}, torch {torch.__version__}, {args.threads} threads",
        "",
    ]), flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        export = make_export(args.preset, tmp / "prod")
        if args.options:
            tc = TeluCodec.load(export, "cpu")
            print("\n".join([f"Payload vs nominal bitrate ({args.preset}, header {HEADER_BYTES} "
                             "bytes excluded):", "", *payload_table(tc), ""]), flush=True)  # fmt: skip
            del tc
            print("\n".join([f"Real-time factor (x faster than real time), {args.preset}, random "
                             f"weights, {args.seconds:g} s of audio, n_q {args.n_q}, CPU, one "
                             "window per batch, each row a fresh process:", "",
                             *option_table(export, args, tmp), ""]), flush=True)  # fmt: skip
        batches = [int(b) for b in _floats(args.batches)]
        if batches:
            print("\n".join([f"Batched throughput ({args.preset}, {args.block_seconds:g} s "
                             "windows, fp32):", "",
                             *batch_table(export, "cpu", batches, args)]), flush=True)  # fmt: skip
        if torch.cuda.is_available():
            rows = batch_table(export, "cuda", list(GPU_BATCHES), args)
            print("\n".join(rows[2:] if batches else ["", *rows]), flush=True)
        else:
            print("\nGPU: none on this machine (the cuda rows print here when there is one).")
        if args.long_hours > 0:
            trained = args.long_model is not None
            long_exp = args.long_model or make_export(args.long_preset, tmp / "long_export")
            r = long_round_trip(long_exp, args.long_hours, args.threads, tmp, args.long_source)
            model = f"trained export {args.long_model}" if trained else args.long_preset
            source = (
                f"held-out speech ({args.long_source}, val split)"
                if args.long_source
                else "speech-like audio"
            )
            print("\n".join(long_lines(r, model, source, trained)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
