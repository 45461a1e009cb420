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
import math
import os
import re
import statistics
import subprocess
import sys
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


def _run_logged(cmd: list[str], env: dict | None = None) -> tuple[int, list[str]]:
    """Run ``cmd`` from the repository root, copying its output line by line to this
    process's stdout (the kit's log) as it comes; its exit code and lines."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line.rstrip("\n"))
    return proc.wait(), lines


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def validation_table(lines: list[str]) -> list[str]:
    """The last validation table a training run logged (``validation: N chunks`` down to
    the line that ends in its duration), without the log's time/rank prefix."""
    starts = [i for i, ln in enumerate(lines) if " validation: " in ln and "chunks" in ln]
    if not starts:
        return []
    out = []
    for ln in lines[starts[-1] :]:
        out.append(re.sub(r"^\d\d:\d\d:\d\d \[rank \d+\] ", "", ln))
        if re.search(r"\(\d+(\.\d+)? s\)$", ln):
            break
    return out[:16]


def summarise_metrics(run_dir: Path, skip_steps: int) -> dict:
    """From a run's metrics.jsonl: step time and throughput (median over log windows after
    ``skip_steps``), peak GPU memory, non-finite steps, whether every logged loss is finite,
    and the last validation at each bitrate (SNR, mel, RMS ratio, level per band)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    perf = [r for r in rows if "perf/step_time_s" in r]
    timed = [r for r in perf if r["step"] > skip_steps] or perf[-1:]
    losses = [v for r in perf for k, v in r.items() if k.startswith("loss/")]
    val_rows = [r for r in rows if "val/session_wall_s" in r]
    val = {}
    if val_rows:
        last = val_rows[-1]
        for key, value in last.items():
            m = re.match(r"val/([\d.]+)kbps/(.+)", key)
            if m and (m[2] in ("snr_db", "mel_distance", "rms_ratio") or m[2].startswith("level_")):
                val.setdefault(m[1], {})[m[2]] = value
        val = {"step": last["step"], "per_kbps": val}
    mem = [r["perf/gpu_mem_peak_gib"] for r in perf if "perf/gpu_mem_peak_gib" in r]
    return {
        "logged_steps": [r["step"] for r in perf],
        "last_step": perf[-1]["step"] if perf else 0,
        "step_time_s": _median([r["perf/step_time_s"] for r in timed]),
        "audio_s_per_s": _median([r["perf/audio_seconds_per_second"] for r in timed]),
        "peak_mem_gib": max(mem) if mem else None,
        "nonfinite_steps": perf[-1].get("guard/nonfinite_steps") if perf else None,
        "losses_finite": bool(losses) and all(math.isfinite(v) for v in losses),
        "last_losses": {k: v for k, v in perf[-1].items() if k.startswith("loss/")} if perf else {},
        "validation": val,
    }


def _launch(config_file: str, extra: list[str], plan: Plan, overrides: list[str]):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file,
           *extra, "-m", "trainer.train", "--config", plan.train_preset,
           f"data.shards={plan.shards}", f"run.output_dir={Path(plan.workdir) / 'runs'}",
           "wandb.enabled=false", *overrides]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return _run_logged(cmd, env)


def _train_overrides(plan: Plan, name: str, steps: int, box_s: float) -> list[str]:
    """One run: ``steps`` steps, validation and a checkpoint only at the end (done), and a
    clock limit inside the stage's time box so the run stops itself, validates and exports
    before the orchestrator would cut it."""
    minutes = max(0.1, (box_s - plan.train_margin_s) / 60)
    return [f"run.name={name}", f"run.max_steps={steps}", f"run.max_minutes={minutes:.3f}",
            "run.log_every=10" if not plan.rehearse else "run.log_every=1",
            "validation.every_steps=1000000000", f"checkpoint.every_steps={steps}",
            'run.precision="bf16"' if not plan.rehearse else 'run.precision="no"']  # fmt: skip


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
    out["matmul_tflops"] = measure_matmul_tflops(torch.device("cuda" if cuda else "cpu"), dtype, n)
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


def stage_train(plan: Plan, box_s: float) -> dict:
    """``plan.train_steps`` steps through ``accelerate launch`` (launch/single_gpu.yaml),
    one validation at the end."""
    over = _train_overrides(plan, "gpu-train", plan.train_steps, box_s)
    rc, lines = _launch("launch/single_gpu.yaml", [], plan, over)
    if rc != 0:
        raise RuntimeError(f"accelerate launch exited {rc}: {' | '.join(lines[-3:])}")
    run_dir = Path(plan.workdir) / "runs" / "gpu-train"
    out = summarise_metrics(run_dir, skip_steps=min(50, plan.train_steps // 4))
    out["validation_table"] = validation_table(lines)
    out["stopped"] = next((ln.split("] ", 1)[-1] for ln in lines if "stopped:" in ln), None)
    out["target_steps"] = plan.train_steps
    return out


def stage_zero2(plan: Plan, box_s: float) -> dict:
    """DeepSpeed ZeRO-2 on one process: N steps, resume, M more, export the checkpoint and
    compare it with the export the run wrote from the live model (must be byte-identical)."""
    import hashlib

    n1, n2 = plan.zero2_steps
    t0 = time.time()
    # port 0: a free port (29500, the file's, may be held by another job on a shared box)
    extra = ["--num_processes", "1", "--main_process_port", "0"]
    over = ["validation.max_items=4"]
    rc, lines = _launch("launch/deepspeed_zero2.yaml", extra, plan,
                        _train_overrides(plan, "gpu-zero2", n1, box_s * 0.6) + over)  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"first run exited {rc}: {' | '.join(lines[-3:])}")
    first_s = time.time() - t0
    left = box_s - first_s
    over2 = _train_overrides(plan, "gpu-zero2", n2, left * 0.9) + over
    rc, lines2 = _launch("launch/deepspeed_zero2.yaml", extra, plan, [*over2, "--resume"])
    if rc != 0:
        raise RuntimeError(f"resumed run exited {rc}: {' | '.join(lines2[-3:])}")
    run_dir = Path(plan.workdir) / "runs" / "gpu-zero2"
    m = summarise_metrics(run_dir, skip_steps=min(10, n1 // 2))
    resumed = [ln for ln in lines2 if "resumed from" in ln]
    last = m["last_step"]
    ck = run_dir / "checkpoints" / f"step_{last:08d}"
    exp = Path(plan.workdir) / "zero2-export"
    cmd = [sys.executable, "-m", "trainer.export", "--checkpoint", str(ck), "--out", str(exp)]
    rc, _ = _run_logged(cmd)
    if rc != 0:
        raise RuntimeError(f"trainer.export exited {rc}")

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    live = run_dir / "export" / "model.safetensors"
    return {
        **m,
        "first_run_steps": n1,
        "first_run_s": first_s,
        "resumed": resumed[-1].split("] ", 1)[-1] if resumed else None,
        "target_steps": n2,
        "export_mib": (exp / "model.safetensors").stat().st_size / 2**20,
        "export_matches_live": digest(exp / "model.safetensors") == digest(live),
    }


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
    if name in plan.sleep:  # test aid: prove the orchestrator cuts an overrunning stage
        time.sleep(plan.sleep[name])
    table = {
        "env": lambda: stage_env(plan, box_s),
        "data": lambda: stage_data(plan, box_s),
        "step-ours-bf16": lambda: stage_step_ours(plan, "bf16"),
        "step-ours-fp32": lambda: stage_step_ours(plan, "no"),
        "step-dac": lambda: stage_step_ref(plan, "dac", box_s),
        "step-encodec": lambda: stage_step_ref(plan, "encodec", box_s),
        "train": lambda: stage_train(plan, box_s),
        "zero2": lambda: stage_zero2(plan, box_s),
        "infer": lambda: stage_infer(plan, box_s),
        "compile": lambda: stage_step_ours(plan, "bf16", compile_=True),
        "budget-ours": lambda: stage_budget(plan, "ours", box_s),
        "budget-dac": lambda: stage_budget(plan, "dac", box_s),
    }
    return table[name]()
