"""CPU thread behaviour: generator train-step time of a preset with OpenMP's default
(spinning) wait policy vs OMP_WAIT_POLICY=PASSIVE, idle and next to one busy process.

Each variant runs in a fresh subprocess (the policy is read when OpenMP starts), so the
numbers are directly comparable. Usage:

    python -m benchmarks.bench_cpu_threads [--preset configs/cpu.yaml] [--steps 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys

from benchmarks.machine import describe

STEP = """
import time, torch
from trainer.config import load_config
from codec.build import build_codec
cfg = load_config({preset!r})
gen = build_codec(cfg.codec)
x = torch.randn(cfg.data.batch_size, 1, cfg.data.segment_samples) * 0.05
opt = torch.optim.AdamW(gen.parameters())
def step():
    out = gen(x)
    (out.audio.square().mean() + out.commitment_loss).backward()
    opt.step(); opt.zero_grad()
step()
t0 = time.perf_counter()
for _ in range({steps}):
    step()
print((time.perf_counter() - t0) / {steps})
"""


def time_variant(preset: str, steps: int, policy: str | None, busy: bool) -> float:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        out = subprocess.run(
            [sys.executable, "-c", STEP.format(preset=preset, steps=steps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        if hog is not None:
            hog.kill()
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="configs/cpu.yaml")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)
    print(f"- machine: {describe()}; date {dt.date.today()}")
    print(f"- command: `python -m benchmarks.bench_cpu_threads --preset {args.preset}`\n")
    print("| neighbour | default wait policy (s/step) | OMP_WAIT_POLICY=PASSIVE (s/step) |")
    print("|---|---|---|")
    for busy in (False, True):
        default = time_variant(args.preset, args.steps, None, busy)
        passive = time_variant(args.preset, args.steps, "PASSIVE", busy)
        label = "one busy process" if busy else "idle"
        print(f"| {label} | {default:.3f} | {passive:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
