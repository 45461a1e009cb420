"""`make demo`: the main job on a built-in default, start to finish on a CPU.

1. build a small corpus of generated recordings that shows what prep copes with (mixed
   rates, channel counts, levels, a DC offset, overs at 1.0129, a silent and a corrupt file);
2. shard it with ``telucodec-prep``'s library function and print the report;
3. train the CPU preset for a few minutes (W&B offline unless a key is configured);
4. print where the validation metrics stand and where checkpoints, export and W&B run are.

Usage: ``python -m scripts.demo --out runs/demo [--minutes 4] [--data DIR] [--preset YAML]``. With ``--data``
it shards that folder instead of the generated corpus (e.g. ../shared/data/telugu-emotion).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from shards.prep import PrepConfig, prep_corpus
from shards.report import format_summary
from shards.split import SplitConfig
from shards.synth import make_demo_corpus
from trainer.config import load_config
from trainer.train import train


def run_demo(out: Path, minutes: float, data: Path | None, preset: str = "configs/cpu.yaml") -> int:
    if out.exists():
        shutil.rmtree(out)  # the demo always starts clean
    if data is None:
        data = out / "corpus"
        files = make_demo_corpus(data)
        print(f"[demo] generated {len(files)} recordings in {data}")
        split = SplitConfig(mode="time", val_seconds=5.0, gap_seconds=1.0)
    else:
        split = SplitConfig(mode="file", val_fraction=0.1, group_regex=r"SPK[FM]\d+")
    shards = out / "shards"
    result = prep_corpus(data, shards, PrepConfig(split=split), progress=True)
    print(format_summary(result.report))
    print(f"[demo] shards and report in {shards}")

    cfg = load_config(
        preset,
        [f"data.shards={shards}", f"run.output_dir={out}", f"run.max_minutes={minutes}"],
    )
    print(f"[demo] training {preset} for up to {minutes} minutes: {cfg.codec.summary()}")
    res = train(cfg)
    print("\n[demo] done")
    print(f"  stopped:      {res.stop_reason} at step {res.steps}")
    if res.validation is not None:
        print("  " + res.validation.table().replace("\n", "\n  "))
    print(f"  run folder:   {res.run_dir} (metrics.jsonl has every logged number)")
    print(f"  checkpoint:   {res.checkpoint}")
    print(f"  export:       {res.export_dir}")
    wandb_dir = res.run_dir / "wandb"
    if wandb_dir.exists():
        print(f"  W&B run:      {wandb_dir} (offline runs: wandb sync {wandb_dir}/offline-run-*)")
    print(
        "  These are minutes of CPU training on generated audio: expect low SNR. See README"
        " 'What numbers to expect'."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/demo", type=Path)
    p.add_argument("--minutes", default=4.0, type=float, help="training wall-clock budget")
    p.add_argument("--data", default=None, type=Path, help="shard this folder instead")
    p.add_argument("--preset", default="configs/cpu.yaml", help="training preset")
    args = p.parse_args(argv)
    return run_demo(args.out, args.minutes, args.data, args.preset)


if __name__ == "__main__":
    sys.exit(main())
