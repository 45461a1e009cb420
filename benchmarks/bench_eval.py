"""Memory and time of scoring one long file with ``telucodec-eval``'s metrics: whole-file
(:func:`infer.eval.score`) against pieces (:func:`infer.eval.score_long`, the default).

Why: the first user's recordings are 1.6-1.8 h long. Each variant runs in a fresh process
on speech-like audio and a degraded copy (0.9 x + noise at about 14 dB SNR), and reports
that process's peak RSS.

    python -m benchmarks.bench_eval [--whole-minutes 1,5,10] [--segmented-minutes 5,102]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import subprocess
import sys

from benchmarks.machine import describe

CHILD = """
import json, time, warnings
import numpy as np
from benchmarks.machine import peak_rss_gib
from infer import eval as ev
from shards import synth
warnings.simplefilter("ignore")
sr, minutes, seg = 16000, {minutes}, {seg}
# at most 5 distinct minutes, repeated: synthesising 1.7 h at once takes 9 GiB by itself
x = synth.speech_like(min(minutes, 5.0) * 60.0, sr, seed=1, peak=0.5).astype(np.float32)
x = np.resize(x, round(minutes * 60 * sr))
y = (0.9 * x + 0.01 * np.random.default_rng(0).standard_normal(len(x))).astype(np.float32)
base = peak_rss_gib()
with open("/proc/self/clear_refs", "w") as f:  # reset the peak: measure the scoring alone
    f.write("5")
t0 = time.perf_counter()
r = ev.score(x, y, sr) if seg == 0 else ev.score_long(x, y, sr, round(seg * sr))
print(json.dumps({{"s": time.perf_counter() - t0, "rss": peak_rss_gib(), "base": base,
                  "pesq": r["pesq_wb"], "stoi": r["stoi"], "mel": r["mel_distance"],
                  "segments": r.get("segments", 1)}}))
"""


def run(minutes: float, seg: float) -> dict:
    """The child's measurements, or ``{"crash": why}`` when it died (the pesq library
    segfaults on long signals: ludlows/PESQ issues 15 and 18 advise splitting them)."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(minutes=minutes, seg=seg)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        how = (
            f"signal {signal.Signals(-proc.returncode).name}"
            if proc.returncode < 0
            else (f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
        )
        return {"crash": how}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--whole-minutes", default="1,5,10")
    p.add_argument("--segmented-minutes", default="5,102")
    p.add_argument("--segment-seconds", type=float, default=30.0)
    args = p.parse_args(argv)
    print(f"Command: `python -m benchmarks.bench_eval --whole-minutes {args.whole_minutes} "
          f"--segmented-minutes {args.segmented_minutes} --segment-seconds {args.segment_seconds:g}`")  # fmt: skip
    print(f"Machine: {describe()}, {dt.date.today().isoformat()}")
    print()
    print("| scoring | audio min | pieces | time s | peak RSS GiB while scoring (before) | "
          "mel dist | PESQ-WB | STOI |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    rows = [("whole file", m, 0.0) for m in _floats(args.whole_minutes)]
    rows += [(f"{args.segment_seconds:g} s pieces", m, args.segment_seconds)
             for m in _floats(args.segmented_minutes)]  # fmt: skip
    for name, minutes, seg in rows:
        r = run(minutes, seg)
        if "crash" in r:
            print(f"| {name} | {minutes:g} | - | - | crashed ({r['crash']}) | - | - | - |")
            continue
        print(f"| {name} | {minutes:g} | {r['segments']} | {r['s']:.1f} | {r['rss']:.2f} "
              f"({r['base']:.2f}) | {r['mel']:.3f} | {r['pesq']:.2f} | {r['stoi']:.3f} |")  # fmt: skip
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
