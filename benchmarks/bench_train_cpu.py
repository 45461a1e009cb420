"""Train a preset on real speech for a fixed wall-clock budget and report its numbers.

Default: the CPU preset for 10 minutes on ../shared/data/telugu-emotion (sharded first with
the default prep settings, speakers split by their SPK field). Reports the median step time,
audio-seconds per second and the validation curve at each validated bitrate, as Markdown
for BENCHMARKS.md. The same script runs the production preset on a GPU:

    python -m benchmarks.bench_train_cpu --preset configs/telugu16k.yaml --minutes 20

Usage: python -m benchmarks.bench_train_cpu [--minutes 10] [--data DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
from pathlib import Path

from benchmarks.machine import describe

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "telugu-emotion"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="configs/cpu.yaml")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=Path("runs/bench_train"))
    p.add_argument("overrides", nargs="*", help="extra key=value config overrides")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"data folder {args.data} not found", file=sys.stderr)
        return 2

    from shards.prep import PrepConfig, prep_corpus
    from shards.split import SplitConfig
    from trainer.config import load_config
    from trainer.train import train

    if args.out.exists():
        shutil.rmtree(args.out)
    shards = args.out / "shards"
    prep_corpus(
        args.data,
        shards,
        PrepConfig(split=SplitConfig(mode="file", val_fraction=0.1, group_regex=r"SPK[FM]\d+")),
        progress=False,
    )
    cfg = load_config(
        args.preset,
        [
            f"data.shards={shards}",
            f"run.output_dir={args.out}",
            f"run.max_minutes={args.minutes}",
            "run.max_steps=1000000",
            "wandb.enabled=false",
            *args.overrides,
        ],
    )
    started = dt.datetime.now()
    res = train(cfg)
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "perf/step_time_s" in r]
    # the first logging window includes start-up (worker spawn, allocator warm-up)
    step_times = [r["perf/step_time_s"] for r in steps[1:]] or [
        r["perf/step_time_s"] for r in steps
    ]
    med = statistics.median(step_times)
    b = cfg.data
    audio_per_step = b.batch_size * cfg.optim.grad_accum * b.segment_samples / cfg.codec.sample_rate
    vals = [r for r in rows if any(k.startswith("val/") for k in r)]
    kbps = sorted(
        {k.split("/")[1] for r in vals for k in r if k.startswith("val/") and k.count("/") == 2}
    )

    cmd = "python -m benchmarks.bench_train_cpu " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print(
        f"\n### Training: {Path(args.preset).stem} preset, {args.minutes:g} min on {args.data.name}"
    )
    print(f"- command: `{cmd.strip()}`")
    print(f"- machine: {describe()}; date {started:%Y-%m-%d}")
    print(f"- {cfg.codec.summary()}")
    print(
        f"- batch {b.batch_size} x {b.segment_samples / cfg.codec.sample_rate:g} s "
        f"({audio_per_step:g} s of audio per step), precision {cfg.run.precision}"
    )
    print(
        f"- steps: {res.steps} in {args.minutes:g} min (validation included); median step time "
        f"{med:.3f} s = {audio_per_step / med:.2f} audio-seconds per second of training"
    )
    print(f"- stop: {res.stop_reason}\n")
    head = "| step | " + " | ".join(f"{k} SNR dB | {k} mel dist | {k} RMS ratio" for k in kbps)
    print(head + " |")
    print("|" + "---|" * (1 + 3 * len(kbps)))
    for r in vals:
        cells = []
        for k in kbps:
            cells += [
                f"{r.get(f'val/{k}/snr_db', float('nan')):.2f}",
                f"{r.get(f'val/{k}/mel_distance', float('nan')):.3f}",
                f"{r.get(f'val/{k}/rms_ratio', float('nan')):.3f}",
            ]
        print(f"| {r['step']} | " + " | ".join(cells) + " |")
    if res.validation is not None:
        print("\nfinal validation:\n```\n" + res.validation.table() + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
