"""Measurements behind ``benchmarks/bench_step.py``: the data path, the GAN step, its FLOPs,
the device's peak, and the reference codecs' timers. Plain functions, no CLI.

Conventions: times in seconds (``time.perf_counter``, with ``torch.cuda.synchronize``
before every clock read on CUDA), memory in GiB (2**30 bytes), FLOPs as counted by
``torch.utils.flop_counter`` (matmul and convolution only: FFTs, elementwise ops and the
optimizer updates are not counted, so MFU is a lower bound of arithmetic use).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.machine import peak_rss_gib

ROOT = Path(__file__).resolve().parents[1]
REFS = {
    "dac": ROOT / "benchmarks" / "refs" / "dac_step.py",
    "encodec": ROOT / "benchmarks" / "refs" / "encodec_step.py",
}
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets. Matched
# by substring of torch.cuda.get_device_name(), first match wins (most specific first).
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("H200", 989.4),
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A10G", 70.0),  # AWS g5 (A10G: 70 dense bf16 with fp32 accumulation)
    ("A10", 125.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("RTX 4090", 165.2),
    ("V100", 0.0),  # no bf16 tensor cores: MFU not reported
)
FLOPS_NOTE = (
    "matmul/conv FLOPs only (torch.utils.flop_counter); FFT, elementwise, optimizer not counted"
)


# ----------------------------------------------------------------------------- data


@dataclass
class ReaderTiming:
    workers: int
    batches: int
    seconds: float
    audio_seconds_per_second: float


def time_reader(cfg, pin_memory: bool, min_seconds: float) -> tuple[torch.Tensor, ReaderTiming]:
    """The reader's first batch (the step's fixed batch) and its steady-state rate.

    Timed from after the first batch (worker start-up excluded) for at least
    ``min_seconds`` and at least three times the loader's prefetch buffer, so batches
    prefetched during start-up inflate the rate by at most about a third of a buffer.
    """
    from shards.reader import make_train_loader

    b = cfg.data
    loader = make_train_loader(
        b.shards,
        batch_size=b.batch_size,
        segment_samples=b.segment_samples,
        seed=b.seed,
        num_workers=b.num_workers,
        base=b.shard_base,
        crops_per_chunk=b.crops_per_chunk,
        sample_rate=cfg.codec.sample_rate,
        pin_memory=pin_memory,
    )
    it = iter(loader)
    first = next(it)["audio"].clone()
    min_batches = 3 * max(1, b.num_workers) * (loader.prefetch_factor or 1)
    n, t0 = 0, time.perf_counter()
    while n < min_batches or time.perf_counter() - t0 < min_seconds:
        next(it)
        n += 1
    elapsed = time.perf_counter() - t0
    del it  # shuts the workers down before the step is timed
    secs = n * b.batch_size * b.segment_samples / cfg.codec.sample_rate
    return first, ReaderTiming(b.num_workers, n, elapsed, secs / elapsed)


# ----------------------------------------------------------------------------- step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepTiming:
    times: list[float]
    warmup_times: list[float]
    peak_mem_gib: float | None
    peak_mem_kind: str
    skipped: int
    sync_warnings: list[str] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def quantile(self, q: float) -> float:
        xs = sorted(self.times)
        return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def _reset_cpu_peak() -> bool:
    try:  # "5" resets the peak RSS (VmHWM) of this process (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def time_gan_steps(
    eng,
    loss_fn,
    batch: torch.Tensor,
    grad_accum: int,
    steps: int,
    warmup: int,
    sync_debug: bool = False,
) -> StepTiming:
    """Run ``warmup`` then ``steps`` timed :func:`gan_step` calls on ``batch`` (on the device).

    ``sync_debug`` (CUDA): one more step under ``torch.cuda.set_sync_debug_mode("warn")``;
    the warnings name every host-device synchronisation in the step (file:line).
    """
    from trainer.step import gan_step

    device = batch.device
    eng.gen.train()
    eng.disc.train()
    skipped = 0

    def one() -> bool:
        return gan_step(eng, loss_fn, (batch for _ in range(grad_accum)), grad_accum).applied

    warm = []
    for _ in range(warmup):  # the first includes compilation and cuDNN autotuning
        _sync(device)
        t0 = time.perf_counter()
        one()
        _sync(device)
        warm.append(time.perf_counter() - t0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        kind = "torch.cuda.max_memory_allocated over the timed steps"
    else:
        kind = "peak RSS of the process" + (
            " over the timed steps" if _reset_cpu_peak() else " (lifetime: VmHWM reset refused)"
        )
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        ok = one()
        _sync(device)
        times.append(time.perf_counter() - t0)
        skipped += not ok
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = peak_rss_gib()
    found = None
    if sync_debug and device.type == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                one()
            finally:
                torch.cuda.set_sync_debug_mode("default")
            _sync(device)
        found = [
            f"{Path(w.filename).name}:{w.lineno}: {str(w.message).splitlines()[0]}"
            for w in caught
            if "synchroniz" in str(w.message)
        ]
    return StepTiming(times, warm, peak, kind, skipped, found)


class _CountingEngine:
    """The :class:`trainer.engine.GanEngine` interface over plain eager modules, for FLOP
    counting: same forward/backward graph, no optimizer updates (elementwise: no matmul
    FLOPs), no autocast (FLOP counts do not depend on dtype)."""

    def __init__(self, gen: torch.nn.Module, disc: torch.nn.Module):
        self.gen, self.disc = gen, disc
        self._gen_params = [p for p in gen.parameters() if p.requires_grad]

    def autocast(self):
        return contextlib.nullcontext()

    def gen_accumulating(self, last: bool):
        return contextlib.nullcontext()

    disc_accumulating = gen_accumulating

    def generator_pass(self):
        return contextlib.nullcontext()

    def backward_disc(self, loss: torch.Tensor) -> None:
        loss.backward()

    def backward_gen(self, loss: torch.Tensor, last: bool) -> None:
        loss.backward(inputs=self._gen_params)

    def step_disc(self):
        return torch.zeros(()), True

    def step_gen(self):
        return torch.zeros(()), True


def count_step_flops(cfg, device: torch.device, batch: torch.Tensor | None = None) -> int:
    """Matmul/conv FLOPs of one :func:`gan_step` (all micro-batches) on fresh eager models."""
    from torch.utils.flop_counter import FlopCounterMode

    from codec.build import build_codec, build_discriminator, build_generator_loss
    from trainer.step import gan_step

    sr = cfg.codec.sample_rate
    gen = build_codec(cfg.codec).to(device).train()
    disc = build_discriminator(cfg.discriminator, sr).to(device).train()
    loss_fn = build_generator_loss(cfg.loss, sr).to(device)
    if batch is None:
        batch = 0.1 * torch.randn(cfg.data.batch_size, 1, cfg.data.segment_samples, device=device)
    accum = cfg.optim.grad_accum
    with FlopCounterMode(display=False) as counter:
        gan_step(_CountingEngine(gen, disc), loss_fn, (batch for _ in range(accum)), accum)
    return int(counter.get_total_flops())


def peak_tflops(device: torch.device, dtype: torch.dtype) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it comes from). CUDA: the table; CPU: a measured matmul."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in BF16_PEAK_TFLOPS:
            if key in name:
                if value <= 0:
                    return None, f"{name}: no bf16 tensor cores; MFU not reported"
                return value, f"{name} dense bf16 peak {value:g} TFLOP/s (data sheet)"
        return None, f"{name}: no peak known; MFU not reported"
    n, reps = 2048, 5
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    value = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12
    return value, (
        f"CPU: measured {str(dtype).removeprefix('torch.')} {n}^3 matmul, "
        f"{torch.get_num_threads()} threads: {value * 1e3:.1f} GFLOP/s"
    )


# ----------------------------------------------------------------------------- references


def resolve_python(python: str | Path) -> str | None:
    """A reference interpreter as a runnable path: a file, or a name on PATH (``python3`` on
    a GPU machine whose own Python carries the reference wheels); None if neither."""
    path = Path(python)
    if path.is_file():
        return str(path)
    return shutil.which(str(python))


def run_reference(
    name: str,
    python: str | Path,
    batch: int,
    segment: int,
    steps: int,
    warmup: int,
    device: str,
    tiny: bool,
    timeout: float,
) -> dict:
    """Run one reference timer; its JSON line, or ``{"impl": name, "error": why}``."""
    script = REFS[name]
    exe = resolve_python(python)
    if exe is None:
        return {"impl": name, "error": f"reference python {python} not found"}
    if not script.exists():
        return {"impl": name, "error": f"{script.relative_to(ROOT)} not found"}
    cmd = [
        exe,
        str(script),
        "--batch",
        str(batch),
        "--segment-samples",
        str(segment),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--device",
        device,
    ]
    if tiny:
        cmd.append("--tiny")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"impl": name, "error": f"timed out after {timeout:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"impl": name, "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        return {"impl": name, "error": f"unreadable JSON line: {e}"}
