"""Helpers shared by the trainer tests: the debug preset with test-friendly schedules, and
the per-step rows a run logged to ``metrics.jsonl``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from trainer.config import ExperimentConfig, load_config


def debug_config(shards: Path, out: Path, *extra: str) -> ExperimentConfig:
    """configs/debug.yaml on ``shards`` writing under ``out``: log every step, validate and
    checkpoint every 2 steps; ``extra`` overrides come last."""
    return load_config(
        "configs/debug.yaml",
        [
            f"data.shards={shards}",
            f"run.output_dir={out}",
            "run.log_every=1",
            "validation.every_steps=2",
            "checkpoint.every_steps=2",
            *extra,
        ],
    )


def logged_steps(run_dir: Path) -> dict[int, dict]:
    """step -> the training-log row of that step (rows carrying the loss terms)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if "loss/mel" in r}


# -- runs in their own processes ------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
STEP_LINE = re.compile(r"\] step (\d+) \|")


def start_run(
    cmd: list[str], log: Path, env_extra: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``cmd`` in the repo with output to ``log``, in its own session: a signal then
    goes to the whole group, as SLURM signals a job step."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    env.update(env_extra or {})
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_step(proc: subprocess.Popen, log: Path, step: int, timeout: float = 300) -> None:
    """Return once ``log`` shows a training-log line of ``step`` or later."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        steps = [int(m) for m in STEP_LINE.findall(log.read_text())]
        if steps and max(steps) >= step:
            return
        assert proc.poll() is None, f"training ended early:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout} s:\n{log.read_text()[-3000:]}")


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def stopped_at(*logs: Path) -> int:
    """The step the logs say the run stopped at on a request (one value for all ranks)."""
    text = "".join(p.read_text() for p in logs)
    found = {int(m) for m in re.findall(r"step (\d+): stop requested", text)}
    assert len(found) == 1, f"ranks disagree or no stop: {found}\n{text[-3000:]}"
    return found.pop()
