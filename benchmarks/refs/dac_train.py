"""Trains DAC's 16 kHz recipe for a fixed wall-clock budget, for the budget benchmark.

Runs in the reference venv (``scripts/ref-venvs.sh``) and imports nothing from TeluCodec.
The model, discriminator, losses, optimizers, schedulers and the step itself are DAC's, built
and run exactly as ``dac_step.py`` does (``build`` / ``train_step``, conf/final/16khz.yml,
fp32). What this file adds is what DAC's ``scripts/train.py`` would otherwise take from its
own data pipeline and loop:

* data: random crops of ``--segment-samples`` from the training chunks that
  ``benchmarks/bench_budget.py`` exported from our shards (``train.npz``), a chunk drawn with
  probability proportional to its length, a uniform offset inside it (numpy, seeded). Both
  systems train on the same loudness-normalised chunks;
* the clock: training stops once ``--minutes`` of wall time have passed since the model was
  built, and every ``--val-every-minutes`` (measured from when the last validation began, as
  our trainer's ``validation.every_minutes`` does) the generator decodes the validation
  chunks (``val.npz``) with ``--n-quantizers`` codebooks. Validation time counts against the
  budget on both sides. After the last step there is one more validation, outside the budget,
  as in our trainer;
* the decoded validation audio goes to ``--out/val_NNN.npz``; the caller scores it with the
  same metric code as our validation hook (the score is not computed here, so both systems'
  numbers come from one implementation).

Prints one JSON line (steps, step times, the validation schedule) on stdout.

Usage (repository root, reference venv):
    .venv-ref/bin/python benchmarks/refs/dac_train.py --data DIR --out DIR --minutes 10 \
        --val-every-minutes 1 --batch 12 --segment-samples 16000 --device cuda [--tiny]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from _harness import add_run_args, apply_run_args, emit, identity
from dac_step import MIN_SEGMENT, SAMPLE_RATE, build, train_step

PROG = "dac_train"


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with train.npz, val.npz")
    p.add_argument("--out", type=Path, required=True, help="where val_NNN.npz go")
    p.add_argument("--minutes", type=float, required=True, help="training wall-clock budget")
    p.add_argument("--val-every-minutes", type=float, required=True)
    p.add_argument("--n-quantizers", type=int, default=8, help="codebooks at validation")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--segment-samples", type=int, default=16000)
    add_run_args(p)
    args = p.parse_args(argv)
    for name in ("minutes", "val_every_minutes"):
        if getattr(args, name) <= 0:
            sys.exit(f"{PROG}: --{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.batch < 1 or args.n_quantizers < 1:
        sys.exit(f"{PROG}: --batch and --n-quantizers must be >= 1")
    if args.segment_samples < MIN_SEGMENT:
        sys.exit(f"{PROG}: --segment-samples must be >= {MIN_SEGMENT}, got {args.segment_samples}")
    for name in ("train.npz", "val.npz"):
        if not (args.data / name).is_file():
            sys.exit(f"{PROG}: {args.data / name} not found (bench_budget.py writes it)")
    apply_run_args(PROG, args)
    return args


def load_chunks(path: Path) -> list[np.ndarray]:
    """``audio`` (float32, chunks end to end) split at ``bounds`` (int64 [n, 2]: start, length)."""
    with np.load(path) as z:
        audio, bounds = z["audio"], z["bounds"]
    return [audio[s : s + n] for s, n in bounds]


class Crops:
    """Random training crops, ``[batch, 1, segment]`` float32; seeded."""

    def __init__(self, chunks: list[np.ndarray], batch: int, segment: int, seed: int):
        self.chunks, self.batch, self.segment = chunks, batch, segment
        lengths = np.array([len(c) for c in chunks], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def next(self) -> torch.Tensor:
        out = np.zeros((self.batch, 1, self.segment), dtype=np.float32)
        for i, k in enumerate(self.rng.choice(len(self.chunks), size=self.batch, p=self.p)):
            c = self.chunks[k]
            start = int(self.rng.integers(0, max(1, len(c) - self.segment + 1)))
            piece = c[start : start + self.segment]  # a chunk shorter than a crop: zero-padded
            out[i, 0, : len(piece)] = piece
        return torch.from_numpy(out)


@torch.no_grad()
def validate(generator, val: list[np.ndarray], n_q: int, dev: torch.device) -> list[np.ndarray]:
    """Each validation chunk through DAC at ``n_q`` codebooks, whole, fp32."""
    generator.eval()
    outs = []
    try:
        for x in val:
            y = generator(torch.from_numpy(x).to(dev).view(1, 1, -1), SAMPLE_RATE, n_q)["audio"]
            outs.append(y.view(-1).float().cpu().numpy())
    finally:
        generator.train()
    return outs


def run(args) -> dict:
    from audiotools.core import util as at_util

    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as DAC's train.py (CUDNN_BENCHMARK=1)
    at_util.seed(args.seed)
    train = Crops(load_chunks(args.data / "train.npz"), args.batch, args.segment_samples, args.seed)
    val = load_chunks(args.data / "val.npz")
    state = build(args.tiny, dev)
    n_q = min(args.n_quantizers, state["generator"].n_codebooks)
    args.out.mkdir(parents=True, exist_ok=True)

    validations, times = [], []
    budget = args.minutes * 60
    t_start = time.time()
    t_last_val = t_start

    def checkpoint_eval(step: int, began: float) -> None:
        outs = validate(state["generator"], val, n_q, dev)
        path = args.out / f"val_{len(validations):03d}.npz"
        np.savez(path, *outs)
        validations.append(
            {"step": step, "session_wall_s": began - t_start, "file": path.name, "items": len(outs)}
        )

    step = 0
    while time.time() - t_start < budget:
        t0 = time.time()
        logs = train_step(state, train.next().to(dev, non_blocking=True))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)  # one step's time, not its launch
        times.append(time.time() - t0)
        step += 1
        if not np.isfinite(logs["loss"]):
            raise RuntimeError(f"{PROG}: non-finite loss at step {step}: {logs}")
        if (time.time() - t_last_val) / 60 >= args.val_every_minutes:
            t_last_val = time.time()
            checkpoint_eval(step, t_last_val)
    trained_s = time.time() - t_start
    if not validations or validations[-1]["step"] != step:
        checkpoint_eval(step, time.time())  # after the budget, as our trainer's final one

    gen = state["generator"]
    return {
        "impl": "dac",
        "version": metadata.version("descript-audio-codec"),
        **identity(dev, args, SAMPLE_RATE, gen, state["discriminator"]),
        "n_quantizers": n_q,
        "kbps": float(n_q * np.log2(gen.codebook_size) * SAMPLE_RATE / gen.hop_length / 1000),
        "minutes": args.minutes,
        "trained_s": trained_s,
        "steps": step,
        "step_time_s_median": statistics.median(times) if times else None,
        "validations": validations,
        "precision": "fp32",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return emit(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
