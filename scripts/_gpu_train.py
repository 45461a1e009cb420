"""The training stages of ``scripts/gpu_check.py``: the trainer launched as a user launches
it (``accelerate launch -m trainer.train``), one process on one device, and what its run
folder says afterwards (metrics.jsonl, the validation table it logged, its export).

Units: seconds, GiB (2**30 bytes), audio-seconds per wall second.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts._gpu_stages import ROOT, Plan


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
