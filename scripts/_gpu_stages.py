"""The stages of ``scripts/gpu_check.py``: each runs in its own process (started by the
orchestrator with a time box) and returns one JSON-able dict. They reuse the benchmark
functions (:mod:`benchmarks.bench_step`, :mod:`benchmarks.step_timing`,
:mod:`benchmarks.bench_infer`, :mod:`benchmarks.bench_budget`) and launch the trainer the
way a user does (``accelerate launch -m trainer.train``), so the CPU rehearsal and the GPU
run go through the same code; only the sizes in :class:`Plan` differ.

Units: seconds, GiB (2**30 bytes), TFLOP/s, audio-seconds per wall second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESET = "configs/telugu16k.yaml"
DEBUG = "configs/debug.yaml"


@dataclass
class Plan:
    """What every stage of one kit run needs; :func:`gpu_plan` / :func:`rehearsal_plan`."""

    rehearse: bool
    preset: str
    tiny: bool  # bench_step/bench_budget/refs --tiny: the debug preset's model sizes
    train_preset: str  # what the accelerate-launched runs train
    batch: int | None  # None: the preset's
    segment_samples: int | None
    steps: int  # timed steps per step benchmark
    warmup: int
    reader_seconds: float
    compile_steps: int
    compile_warmup: int
    train_steps: int  # the single-GPU accelerate run
    zero2_steps: tuple[int, int]  # (first run, after resume)
    train_margin_s: float  # time a training stage keeps for start-up, validation, export
    infer_batches: tuple[int, ...]
    infer_block_seconds: float
    budget_minutes: float
    budget_val_every_minutes: float
    ref_python: str
    data: str | None  # shard folder (manifest.json) or audio folder; None: generated audio
    workdir: str
    shards: str | None = None  # filled by the data stage
    sleep: dict[str, float] = field(default_factory=dict)  # test aid: a stage sleeps first

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Plan:
        d = json.loads(path.read_text())
        d["zero2_steps"] = tuple(d["zero2_steps"])
        d["infer_batches"] = tuple(d["infer_batches"])
        return cls(**d)


def gpu_plan(ref_python: str, data: str | None, workdir: str, minutes: float) -> Plan:
    """The production sizes: batch 12 x 1 s of configs/telugu16k.yaml, >= 20 timed steps."""
    return Plan(
        rehearse=False, preset=PRESET, tiny=False, train_preset=PRESET, batch=12,
        segment_samples=16_000, steps=20, warmup=5, reader_seconds=5.0, compile_steps=20,
        compile_warmup=5, train_steps=300, zero2_steps=(50, 60), train_margin_s=75.0,
        infer_batches=(1, 4, 16, 64), infer_block_seconds=5.0, budget_minutes=minutes,
        budget_val_every_minutes=1.0, ref_python=ref_python, data=data, workdir=workdir,
    )  # fmt: skip


def rehearsal_plan(ref_python: str, data: str | None, workdir: str, minutes: float) -> Plan:
    """The same stages at debug-preset sizes, seconds each on a CPU."""
    return Plan(
        rehearse=True, preset=PRESET, tiny=True, train_preset=DEBUG, batch=None,
        segment_samples=None, steps=2, warmup=1, reader_seconds=0.3, compile_steps=1,
        compile_warmup=1, train_steps=4, zero2_steps=(2, 4), train_margin_s=20.0,
        infer_batches=(1, 2), infer_block_seconds=1.0, budget_minutes=minutes,
        budget_val_every_minutes=minutes / 2, ref_python=ref_python, data=data,
        workdir=workdir,
    )  # fmt: skip


# ----------------------------------------------------------------------------- helpers


def _step_args(plan: Plan, precision: str, compile_: bool, name: str) -> argparse.Namespace:
    """The namespace :func:`benchmarks.bench_step.bench_step` takes (its parser's fields)."""
    from benchmarks.bench_step import build_parser

    compile_steps = (plan.compile_steps, plan.compile_warmup)
    steps, warmup = compile_steps if compile_ else (plan.steps, plan.warmup)
    argv = ["--preset", plan.preset, "--steps", str(steps), "--warmup", str(warmup),
            "--precision", precision, "--refs", "none", "--data", str(plan.shards),
            "--workdir", str(Path(plan.workdir) / name),
            "--reader-seconds", str(plan.reader_seconds)]  # fmt: skip
    argv += ["--batch", str(plan.batch)] if plan.batch else []
    argv += ["--segment-samples", str(plan.segment_samples)] if plan.segment_samples else []
    argv += ["--tiny"] if plan.tiny else []
    argv += ["--compile"] if compile_ else []
    argv += ["data.num_workers=1"] if plan.rehearse else []  # 2 CPU cores here, 16 on a GPU box
    args = build_parser().parse_args(argv)
    args.argv, args.ref_names = argv, []
    return args


# ----------------------------------------------------------------------------- stages


def stage_env(plan: Plan, box_s: float) -> dict:
    """Device, driver, versions, and the measured dense matmul rate (bf16 on a GPU, fp32
    on a CPU: the rate the MFU figures can be read against)."""
    import importlib.metadata as md
    import platform

    import torch

    from benchmarks.machine import describe

    cuda = torch.cuda.is_available()
    versions = {}
    for pkg in ("accelerate", "deepspeed", "transformers", "numpy", "soundfile", "webdataset"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    out = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "machine": describe(),
        "packages": versions,
        "driver": None,
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        out["gpu_memory_gib"] = props.total_memory / 2**30
        out["capability"] = f"{props.major}.{props.minor}"
        try:
            q = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            out["driver"] = subprocess.run(
                q, capture_output=True, text=True, timeout=20
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    dtype, n = (torch.bfloat16, 8192) if cuda else (torch.float32, 512 if plan.rehearse else 2048)
    out["matmul_dtype"] = str(dtype).removeprefix("torch.")
    # 50 products of 8192^3 take about 0.1 s on an H100: long enough to time, short to spend
    device = torch.device("cuda" if cuda else "cpu")
    out["matmul_tflops"] = measure_matmul_tflops(device, dtype, n, reps=50 if cuda else 10)
    return out


def measure_matmul_tflops(device, dtype, n: int, reps: int = 10) -> float:
    """Dense ``n x n @ n x n`` rate in TFLOP/s (one warm-up product first)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def stage_data(plan: Plan, box_s: float) -> dict:
    """The shard folder every stage reads: ``plan.data`` if it holds shards, an audio folder
    prepped, or generated speech-like audio prepped (the rehearsal)."""
    from benchmarks.bench_budget import TELUGU_SPEAKER
    from benchmarks.bench_step import prepare_shards

    data = Path(plan.data) if plan.data else None
    shards = prepare_shards(data, Path(plan.workdir) / "data", plan.tiny, TELUGU_SPEAKER)
    manifest = json.loads((shards / "manifest.json").read_text())
    return {"shards": str(shards), "source": plan.data or "generated speech-like audio",
            "manifest_keys": sorted(manifest)[:12]}  # fmt: skip


def _step_record(report: dict) -> dict:
    """bench_step's report as one row of the kit's ``records``."""
    return {
        "impl": "telucodec",
        "precision": "fp32" if report["precision"] == "no" else report["precision"],
        "compile": bool(report["compile"]),
        "step_time_s": report["step"]["median_s"],
        "step_time_p10_s": report["step"]["p10_s"],
        "step_time_p90_s": report["step"]["p90_s"],
        "timed_steps": report["step"]["steps"],
        "audio_s_per_s": report["audio_seconds_per_second"],
        "peak_mem_gib": report["peak_mem_gib"],
        "mfu": report["mfu"],
        "params_g": report["params_generator"],
        "params_d": report["params_discriminator"],
        "batch": report["batch"],
        "segment_samples": report["segment_samples"],
        "flops_per_step": report["flops_per_step"],
        "peak_source": report["peak_source"],
        "skipped_steps": report["step"]["skipped"],
        "host_syncs": None if report["step"]["sync_warnings"] is None
        else sorted(set(report["step"]["sync_warnings"])),
        "reader_audio_s_per_s": report["reader"]["audio_seconds_per_second"],
        "reader_ratio": report["reader"]["ratio"],
        "compile_stats": report["compile_stats"],
    }  # fmt: skip


def stage_step_ours(plan: Plan, precision: str, compile_: bool = False) -> dict:
    from benchmarks.bench_step import bench_step

    backend = None
    if compile_:
        backend = "inductor"
        if plan.rehearse:
            # inductor's C++ code generation takes minutes on a small CPU; the rehearsal
            # checks the kit's path through run.compile with the tests' backend instead
            import torch

            from trainer import engine

            backend = "aot_eager"
            engine._compile = lambda m: torch.compile(m, backend=backend)
    name = f"step-{precision}{'-compile' if compile_ else ''}"
    record = _step_record(bench_step(_step_args(plan, precision, compile_, name)))
    return {"record": {**record, "compile_backend": backend}}


def stage_step_ref(plan: Plan, name: str, box_s: float) -> dict:
    """A reference codec's step timer (``benchmarks/refs``), same batch and segment as
    ours; skipped (not failed) when the reference interpreter is absent."""
    from benchmarks.bench_step import build_config
    from benchmarks.step_timing import resolve_python, run_reference

    if resolve_python(plan.ref_python) is None:
        return {"skipped": f"reference python {plan.ref_python} not found"}
    cfg = build_config(_step_args(plan, "no", False, f"step-{name}"))
    batch, segment = cfg.data.batch_size, cfg.data.segment_samples
    device = "cuda" if _cuda() else "cpu"
    ref = run_reference(
        name, plan.ref_python, batch, segment, plan.steps, plan.warmup, device, plan.tiny, box_s
    )
    if "error" in ref:
        raise RuntimeError(f"{name}: {ref['error']}")
    return {
        "record": {
            "impl": name,
            "version": ref.get("version"),
            "precision": ref.get("precision", "fp32"),
            "compile": False,
            "step_time_s": ref["step_time_s_median"],
            "timed_steps": len(ref.get("step_times_s", [])),
            "audio_s_per_s": ref["audio_seconds_per_second"],
            "peak_mem_gib": ref.get("peak_mem_gib", ref.get("peak_rss_gib")),
            "mfu": None,  # the reference timers count no FLOPs
            "params_g": ref.get("params_generator"),
            "params_d": ref.get("params_discriminator"),
            "batch": batch,
            "segment_samples": segment,
        }
    }


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def stage_infer(plan: Plan, box_s: float) -> dict:
    """Batched encode + decode throughput (x real time) of the preset's codec, random
    weights, fp32, windows of ``infer_block_seconds``; bar: 500x on a GPU."""
    import torch

    from benchmarks.bench_infer import make_export, rtf
    from infer.api import TeluCodec
    from shards import synth
    from trainer.config import load_config

    preset = plan.train_preset
    export = make_export(preset, Path(plan.workdir) / "infer-export")
    n_q = load_config(preset).codec.operating_n_quantizers
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # every window has the same shape
    seconds = max(plan.infer_batches) * plan.infer_block_seconds
    x = synth.speech_like(seconds, 16_000, seed=4)
    rows = []
    for b in plan.infer_batches:
        tc = TeluCodec.load(export, device, plan.infer_block_seconds, b)
        r = rtf(tc, x, n_q)
        rows.append({"batch": b, "audio_s": seconds, "encode_x": r["encode_x"],
                     "decode_x": r["decode_x"], "total_x": r["total_x"],
                     "first_call_s": r["first_s"]})  # fmt: skip
        del tc
    best = max(r["total_x"] for r in rows)
    return {"preset": preset, "device": device, "n_q": n_q, "precision": "fp32",
            "block_seconds": plan.infer_block_seconds, "rows": rows, "best_total_x": best,
            "meets_500x": best >= 500}  # fmt: skip


def stage_budget(plan: Plan, system: str, box_s: float) -> dict:
    """One system of :mod:`benchmarks.bench_budget` for ``plan.budget_minutes``."""
    from benchmarks import bench_budget

    work = Path(plan.workdir) / "budget"
    argv = ["--systems", system, "--preset", plan.preset, "--minutes", f"{plan.budget_minutes:g}",
            "--val-every-minutes", f"{plan.budget_val_every_minutes:g}", "--data",
            str(plan.shards), "--workdir", str(work), "--ref-python", plan.ref_python]  # fmt: skip
    argv += ["--tiny"] if plan.tiny else []
    argv += ["data.num_workers=1"] if plan.rehearse else []
    if system == "dac":
        from benchmarks.step_timing import resolve_python

        if resolve_python(plan.ref_python) is None:
            return {"skipped": f"reference python {plan.ref_python} not found"}
    rc = bench_budget.main(argv)
    if rc != 0:
        raise RuntimeError(f"bench_budget exited {rc}")
    rec = json.loads((work / f"budget_{system}.json").read_text())
    last = rec["curve"][-1]
    return {
        "record": {
            "impl": "telucodec" if system == "ours" else "dac",
            "precision": rec["precision"],
            "minutes": rec["minutes"],
            "val_every_minutes": rec["val_every_minutes"],
            "val_chunks": rec["val_chunks"],
            "kbps": rec["kbps"],
            "steps": rec["steps"],
            "step_time_s": rec.get("step_time_s_median"),
            "params_g": rec["params_generator"],
            "batch": rec["batch"],
            "segment_samples": rec["segment_samples"],
            "final_mel_distance": last["mel_distance"],
            "final_snr_db": last["snr_db"],
            "final_rms_ratio": last["rms_ratio"],
            "curve": rec["curve"],
        }
    }


def run_stage(name: str, plan: Plan, box_s: float) -> dict:
    """Dispatch one stage by name (the orchestrator's stage names)."""
    from scripts import _gpu_train

    if name in plan.sleep:  # test aid: prove the orchestrator cuts an overrunning stage
        time.sleep(plan.sleep[name])
    table = {
        "env": lambda: stage_env(plan, box_s),
        "data": lambda: stage_data(plan, box_s),
        "step-ours-bf16": lambda: stage_step_ours(plan, "bf16"),
        "step-ours-fp32": lambda: stage_step_ours(plan, "no"),
        "step-dac": lambda: stage_step_ref(plan, "dac", box_s),
        "step-encodec": lambda: stage_step_ref(plan, "encodec", box_s),
        "train": lambda: _gpu_train.stage_train(plan, box_s),
        "zero2": lambda: _gpu_train.stage_zero2(plan, box_s),
        "infer": lambda: stage_infer(plan, box_s),
        "compile": lambda: stage_step_ours(plan, "bf16", compile_=True),
        "budget-ours": lambda: stage_budget(plan, "ours", box_s),
        "budget-dac": lambda: stage_budget(plan, "dac", box_s),
    }
    return table[name]()
