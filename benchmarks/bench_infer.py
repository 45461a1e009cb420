"""Inference benchmark: payload vs nominal bitrate, real-time factor, a long-file round trip.

    python -m benchmarks.bench_infer [--preset configs/telugu16k.yaml] [--seconds 30]
        [--long-hours 2 --long-preset configs/cpu.yaml]

Weights are random (a fresh build exported with :func:`trainer.export.export_state_dict`):
speed, memory, sizes and levels do not depend on training. (1) payload bytes of code files
against bitrate x duration; (2) encode + decode real-time factor of ``--preset`` on this
machine; (3) ``--long-hours`` of generated 16 kHz audio through ``encode_file`` /
``decode_file`` in a child process, whose peak RSS is read from ``getrusage``; output length
and loudness are compared to the input's, and the loudness restoration is checked as
"output loudness == decoder-level loudness - stored gain" (an untrained model does not
reproduce its input's loudness at the decoder, so that is the model-independent check).
Prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from benchmarks.machine import describe
from codec.build import build_codec
from infer.api import TeluCodec
from infer.codefile import HEADER_BYTES
from infer.level import LoudnessMeter
from shards import loudness, synth
from trainer.config import load_config
from trainer.export import export_state_dict


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
    rows = [
        "| n_q | kbps | seconds | payload bytes | nominal bytes | error |",
        "|---|---|---|---|---|---|",
    ]
    for seconds in (10.0, 60.0):
        x = synth.speech_like(seconds, tc.sample_rate, seed=1)
        cf = tc.encode(x, tc.sample_rate, n_quantizers=tc.n_codebooks)
        for n in sorted({1, tc.default_n_quantizers, tc.n_codebooks}):
            cf_n = type(cf)(**{**cf.__dict__, "codes": cf.codes[:n]})
            got = len(cf_n.to_bytes()) - HEADER_BYTES
            nominal = tc.bitrate_kbps(n) * 1000 * seconds / 8
            rows.append(f"| {n} | {tc.bitrate_kbps(n):g} | {seconds:g} | {got} | {nominal:.0f} | "
                        f"{100 * (got - nominal) / nominal:+.2f}% |")  # fmt: skip
    return rows


def rtf(tc: TeluCodec, seconds: float, n_q: int) -> dict:
    x = synth.speech_like(seconds, tc.sample_rate, seed=2)
    tc.decode(tc.encode(x[: tc.sample_rate], tc.sample_rate, n_q))  # warm-up
    t0 = time.perf_counter()
    cf = tc.encode(x, tc.sample_rate, n_q)
    t1 = time.perf_counter()
    tc.decode(cf)
    t2 = time.perf_counter()
    return {"encode_x": seconds / (t1 - t0), "decode_x": seconds / (t2 - t1),
            "total_x": seconds / (t2 - t0)}  # fmt: skip


def long_child(export: str, wav: str, tcc: str, out: str, threads: int) -> None:
    """Runs in a fresh process so ``ru_maxrss`` is this round trip's own peak."""
    torch.set_num_threads(threads)
    tc = TeluCodec.load(export)
    t0 = time.perf_counter()
    cf = tc.encode_file(wav, tcc)
    t1 = time.perf_counter()
    tc.decode_file(tcc, out)
    t2 = time.perf_counter()
    print(json.dumps({"gain_db": cf.gain_db, "loudness_in": cf.loudness_lufs,
                      "encode_s": t1 - t0, "decode_s": t2 - t1,
                      "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


def long_round_trip(export: Path, hours: float, threads: int, tmp: Path) -> dict:
    wav = synth.write_long_wav(tmp / "long.wav", hours, rate=16000, channels=1, seed=3)
    tcc, out = tmp / "long.tcc", tmp / "long_out.wav"
    cmd = [sys.executable, "-m", "benchmarks.bench_infer", "--_child", str(export), str(wav),
           str(tcc), str(out), str(threads)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["loudness_in_measured"], res["len_in"] = file_loudness(wav, 16000)
    res["loudness_out"], res["len_out"] = file_loudness(out, 16000)
    res["hours"] = hours
    return res


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_child":
        long_child(argv[1], argv[2], argv[3], argv[4], int(argv[5]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="configs/telugu16k.yaml")
    p.add_argument("--seconds", type=float, default=30.0, help="audio for the RTF run")
    p.add_argument("--long-hours", type=float, default=2.0, help="0 = skip the long run")
    p.add_argument("--long-preset", default="configs/cpu.yaml")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = [
        f"### Inference ({datetime.date.today().isoformat()})",
        "",
        f"Command: `python -m benchmarks.bench_infer {' '.join(argv)}`".rstrip() + "  ",
        f"Machine: {describe()}, torch {torch.__version__}, {args.threads} threads",
        "",
    ]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tc = TeluCodec.load(make_export(args.preset, tmp / "prod"))
        lines += [f"Payload vs nominal bitrate ({args.preset}, header {HEADER_BYTES} bytes "
                  "excluded):", "", *payload_table(tc), ""]  # fmt: skip
        lines += ["Real-time factor (x faster than real time), random weights, "
                  f"{args.seconds:g} s of audio:", "", "| preset | n_q | encode | decode | "
                  "encode+decode |", "|---|---|---|---|---|"]  # fmt: skip
        for preset in dict.fromkeys([args.preset, args.long_preset]):
            t = tc if preset == args.preset else TeluCodec.load(make_export(preset, tmp / "l"))
            for n in sorted({t.default_n_quantizers, t.n_codebooks}):
                r = rtf(t, args.seconds, n)
                lines.append(f"| {preset} | {n} | {r['encode_x']:.2f}x | {r['decode_x']:.2f}x | "
                             f"{r['total_x']:.2f}x |")  # fmt: skip
        print("\n".join(lines), flush=True)
        lines = []
        if args.long_hours > 0:
            long_exp = make_export(args.long_preset, tmp / "long_export")
            r = long_round_trip(long_exp, args.long_hours, args.threads, tmp)
            lines += [
                "",
                f"Long file: {r['hours']:g} h of 16 kHz speech-like audio, {args.long_preset}, "
                "`encode_file` + `decode_file` in a child process:",
                "",
                f"- peak RSS {r['maxrss_mib']:.0f} MiB; encode {r['encode_s']:.0f} s, decode "
                f"{r['decode_s']:.0f} s ({r['hours'] * 3600 / (r['encode_s'] + r['decode_s']):.1f}x"
                " real time)",
                f"- length in {r['len_in']} samples, out {r['len_out']} samples",
                f"- loudness in {r['loudness_in_measured']:.2f} LUFS (header "
                f"{r['loudness_in']:.2f}), gain {r['gain_db']:+.2f} dB, out "
                f"{r['loudness_out']:.2f} LUFS (random weights: the decoder does not reproduce "
                "its input's level; restoration itself is exact, see tests/infer)",
            ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
