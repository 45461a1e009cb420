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


def test_failed_online_init_falls_back_to_a_working_offline_run(tmp_path, monkeypatch):
    """A real online init that fails (a local port nobody listens on: no outside network)
    used to leave its run id claimed, so the offline retry died with "run ID ... is in use"
    and W&B was off for the run."""
    from accelerate import Accelerator

    from trainer.tracking import Tracker

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(Tracker, "init_timeout_s", 5.0)
    acc = Accelerator(cpu=True, log_with="wandb")
    tracker = Tracker(acc, WandbConfig(mode="online", project="t"))
    run_id = tracker.start("fallback", tmp_path, {"a": 1}, "fallbackrun01")
    try:
        assert run_id == "fallbackrun01"  # the same id: a resumed run keeps its W&B run
        assert tracker.active and tracker.mode == "offline"
        tracker.log({"loss/mel": 1.25}, step=1)
    finally:
        tracker.finish()
        import wandb

        wandb.teardown()  # wait until W&B's service has written everything (as at exit)
    runs = list((tmp_path / "wandb").glob("offline-run-*-fallbackrun01"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    # the offline run's transaction log (what `wandb sync` uploads) holds the logged row
    log = (runs[0] / "run-fallbackrun01.wandb").read_bytes()
    assert b"loss/mel" in log and b"1.25" in log


if __name__ == "__main__":
    pytest.main([__file__])
