"""W&B: offline without a key, one run per job, the same run continued on resume, and a
broken W&B never stops training."""

from __future__ import annotations

import json

import pytest

from trainer.config import WandbConfig, load_config
from trainer.tracking import resolve_mode
from trainer.train import train


def test_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert resolve_mode(WandbConfig()) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(WandbConfig()) == "online"
    assert resolve_mode(WandbConfig(enabled=False)) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode(WandbConfig()) == "offline"


def test_offline_run_and_resume_same_run(tiny_shards, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    common = [
        f"data.shards={tiny_shards}",
        f"run.output_dir={tmp_path}",
        "wandb.enabled=true",
        "validation.every_steps=100",
        "checkpoint.every_steps=100",
    ]
    train(load_config("configs/debug.yaml", [*common, "run.max_steps=1"]))
    run_dir = tmp_path / "debug"
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs  # one W&B run for the job
    run_id = runs[0].name.rsplit("-", 1)[-1]
    # the validation at the end of the run logged audio pairs and mel images
    assert list(runs[0].glob("files/media/audio/*")), "no audio logged"
    assert list(runs[0].glob("files/media/images/*")), "no mel image logged"
    train(load_config("configs/debug.yaml", [*common, "run.max_steps=2"]), resume="auto")
    ids = {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}
    assert ids == {run_id}  # the resumed job logged into the same run
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss/mel" in r] == [1, 2]


def test_broken_wandb_does_not_stop_training(tiny_shards, tmp_path, monkeypatch):
    import wandb

    def boom(*a, **k):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(wandb, "init", boom)
    cfg = load_config(
        "configs/debug.yaml",
        [
            f"data.shards={tiny_shards}",
            f"run.output_dir={tmp_path}",
            "wandb.enabled=true",
            "wandb.mode=online",
            "run.max_steps=1",
            "validation.every_steps=100",
        ],
    )
    res = train(cfg)
    assert res.steps == 1
    assert (tmp_path / "debug" / "metrics.jsonl").exists()


if __name__ == "__main__":
    pytest.main([__file__])
