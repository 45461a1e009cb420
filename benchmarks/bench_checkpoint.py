"""How long a full training checkpoint of a preset takes to save and to load, and its size.

Why: a run stopped by its scheduler (trainer/stopping.py) must save before the launcher's
SIGKILL, 30 s after SIGTERM; this says how much of that window the save uses on a given
disk. The checkpoint is the trainer's own (``CheckpointManager.save`` of both models, both
AdamW states after one real step, schedulers, RNGs, loop state), written to ``--dir``.

    python -m benchmarks.bench_checkpoint [--preset configs/telugu16k.yaml] [--dir runs/bench_ckpt]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import time
from pathlib import Path

import torch

from benchmarks.machine import describe
from trainer.checkpoint import CheckpointManager, TrainState
from trainer.config import load_config
from trainer.engine import build_accelerator
from trainer.step import build_step_objects, gan_step


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="configs/telugu16k.yaml")
    p.add_argument("--dir", default="runs/bench_ckpt", help="where to write (the disk measured)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    # one small real step so the optimizers hold their state (AdamW creates it lazily)
    cfg = load_config(args.preset, ["run.cpu=true", "run.precision=no", "run.compile=false"])
    acc = build_accelerator(cfg)
    eng, loss_fn = build_step_objects(acc, cfg)
    x = torch.randn(1, 1, cfg.data.segment_samples) * 0.05
    gan_step(eng, loss_fn, iter([x]), 1)

    state = TrainState(step=1, world_size=1)  # saved as JSON by the manager, as in training
    eng.register_for_checkpointing()
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    ckpt = CheckpointManager(acc, root, keep_last=1)
    saves, loads = [], []
    for i in range(args.repeats):
        state.step = i + 1
        t0 = time.perf_counter()
        path = ckpt.save(state, "{}")
        saves.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ckpt.load(path)  # the trainer's resume path (weights-only loads)
        loads.append(time.perf_counter() - t0)
    size = dir_bytes(path)
    shutil.rmtree(root, ignore_errors=True)

    n_g = sum(q.numel() for q in eng.codec.parameters()) / 1e6
    n_d = sum(q.numel() for q in eng.discriminator.parameters()) / 1e6
    print(f"Command: `python -m benchmarks.bench_checkpoint --preset {args.preset} --dir {root}`")
    print(f"Machine: {describe()}, {dt.date.today().isoformat()}")
    print()
    print("| preset | parameters (g + d) | checkpoint MiB | save s (each) | load s (each) |")
    print("|---|---|---|---|---|")
    print(
        f"| {Path(args.preset).stem} | {n_g:.1f} M + {n_d:.1f} M | {size / 2**20:.0f} | "
        f"{' / '.join(f'{s:.2f}' for s in saves)} | {' / '.join(f'{s:.2f}' for s in loads)} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
