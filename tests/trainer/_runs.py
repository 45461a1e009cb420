"""Helpers shared by the trainer tests: the debug preset with test-friendly schedules, and
the per-step rows a run logged to ``metrics.jsonl``."""

from __future__ import annotations

import json
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
