"""What the two reference step timers share: CLI, fixed batch, timing loop, memory, and the
one-JSON-line output. Imported by ``dac_step.py`` / ``encodec_step.py`` as a sibling module
(they run as plain scripts in ``.venv-ref``, where our packages are not installed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Where and how a reference script runs: the flags every script here takes."""
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--tiny", action="store_true", help="shrunken model for CI")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)


def apply_run_args(prog: str, args: argparse.Namespace) -> None:
    """Check and apply :func:`add_run_args`' flags (exits naming the flag)."""
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"{prog}: --device cuda but torch.cuda.is_available() is False")
    if args.threads is not None:
        torch.set_num_threads(args.threads)


def parse_args(prog: str, description: str, argv: list[str] | None, min_segment: int):
    """The shared CLI; bad values exit with a message naming the flag."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--batch", type=int, default=2, help="examples per step")
    p.add_argument("--segment-samples", type=int, default=8000, help="samples at 16 kHz")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    add_run_args(p)
    args = p.parse_args(argv)
    for name in ("batch", "steps"):
        if getattr(args, name) < 1:
            sys.exit(f"{prog}: --{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        sys.exit(f"{prog}: --warmup must be >= 0, got {args.warmup}")
    if args.segment_samples < min_segment:
        sys.exit(
            f"{prog}: --segment-samples must be >= {min_segment} (longest STFT window), "
            f"got {args.segment_samples}"
        )
    apply_run_args(prog, args)
    return args


def emit(record: Callable[[], dict]) -> int:
    """Print ``record()`` as the one JSON line on stdout; anything the libraries print while
    it runs goes to stderr, and their UserWarnings/FutureWarnings are silenced (DAC's own
    train.py silences UserWarnings the same way)."""
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    with contextlib.redirect_stdout(sys.stderr):
        rec = record()
    print(json.dumps(rec), flush=True)
    return 0


def make_batch(
    batch: int, samples: int, seed: int, device: torch.device, sample_rate: int
) -> torch.Tensor:
    """``[batch, 1, samples]`` of two tones plus white noise at -26 dBFS RMS, seeded."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / sample_rate
    f0 = 100.0 + 200.0 * torch.rand(batch, 1, 1, generator=g)
    x = torch.sin(2 * math.pi * f0 * t) + 0.5 * torch.sin(2 * math.pi * 7.3 * f0 * t)
    x = x + 0.3 * torch.randn(batch, 1, samples, generator=g)
    rms = x.pow(2).mean(dim=-1, keepdim=True).sqrt()
    return (x * (10 ** (-26 / 20)) / rms).to(device)


def time_steps(
    prog: str,
    step: Callable[[], dict[str, float]],
    warmup: int,
    steps: int,
    dev: torch.device,
    loss_key: str,
) -> tuple[list[float], list[float]]:
    """Run ``warmup + steps`` calls of ``step``; return the timed steps' seconds and
    ``loss_key`` at every step. A non-finite loss stops with the step's logs."""
    times, losses = [], []
    for i in range(warmup + steps):
        _sync(dev)
        t0 = time.perf_counter()
        logs = step()
        _sync(dev)
        dt = time.perf_counter() - t0
        losses.append(logs[loss_key])
        if not all(math.isfinite(v) for v in logs.values()):
            raise RuntimeError(f"{prog}: non-finite loss at step {i}: {logs}")
        if i >= warmup:
            times.append(dt)
    return times, losses


def common_record(
    dev: torch.device,
    args,
    sample_rate: int,
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
    times: list[float],
) -> dict:
    """The record's keys both step timers fill the same way."""
    median = statistics.median(times)
    return {
        **identity(dev, args, sample_rate, generator, discriminator),
        "step_times_s": times,
        "step_time_s_median": median,
        "audio_seconds_per_second": args.batch * args.segment_samples / sample_rate / median,
        **peak_memory(dev),
        "precision": "fp32",
    }


def identity(
    dev: torch.device,
    args,
    sample_rate: int,
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
) -> dict:
    """What ran where: torch, device, threads, sizes and parameter counts (every script's
    record starts with these)."""
    return {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "tiny": args.tiny,
        "batch": args.batch,
        "segment_samples": args.segment_samples,
        "sample_rate": sample_rate,
        "params_generator": sum(p.numel() for p in generator.parameters()),
        "params_discriminator": sum(p.numel() for p in discriminator.parameters()),
    }


def peak_memory(dev: torch.device) -> dict[str, float]:
    """CUDA: max allocated, ``peak_mem_gib``; CPU: the process's peak RSS, ``peak_rss_gib``
    (includes torch itself). One key, so readers can tell them apart."""
    if dev.type == "cuda":
        return {"peak_mem_gib": torch.cuda.max_memory_allocated(dev) / 2**30}
    return {"peak_rss_gib": _peak_rss_gib()}


def _peak_rss_gib() -> float:
    """This process's own peak RSS in GiB: VmHWM, not ru_maxrss (Linux copies the parent's
    ru_maxrss into a child across fork+exec, so a child started from a big process would
    report the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
