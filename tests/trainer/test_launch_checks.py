"""The trainer refuses a distributed setup that is not the one its launcher asked for, before
step 1, instead of training as something else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType

from trainer.config import ConfigError, load_config
from trainer.engine import LaunchMismatch, check_launch, dist_timeout

REPO = Path(__file__).resolve().parents[2]


def _acc(kind: DistributedType, n: int) -> SimpleNamespace:
    return SimpleNamespace(distributed_type=kind, num_processes=n)


def test_deepspeed_asked_but_ddp_built_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchMismatch, match="asked for DeepSpeed.*MULTI_GPU"):
        check_launch(_acc(DistributedType.MULTI_GPU, 2), deepspeed_asked=True)
    check_launch(_acc(DistributedType.DEEPSPEED, 2), deepspeed_asked=True)
    check_launch(_acc(DistributedType.MULTI_GPU, 2), deepspeed_asked=False)


def test_a_launcher_world_without_a_process_group_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchMismatch, match="world of 2 .* group of 1.*use_cpu"):
        check_launch(_acc(DistributedType.NO, 1), deepspeed_asked=False)
    monkeypatch.delenv("WORLD_SIZE")
    check_launch(_acc(DistributedType.NO, 1), deepspeed_asked=False)  # no launcher: one process


def test_dist_timeout_is_a_config_field():
    cfg = load_config("configs/debug.yaml", ["run.dist_timeout_minutes=7.5"])
    assert dist_timeout(cfg) == timedelta(minutes=7.5)
    # unset: 4 minutes per minute of validation audio, at least 30
    cfg = load_config("configs/debug.yaml", ["validation.max_seconds=1800"])
    assert dist_timeout(cfg) == timedelta(minutes=120)
    assert dist_timeout(load_config("configs/debug.yaml", [])) == timedelta(minutes=30)
    with pytest.raises(ConfigError, match="run.dist_timeout_minutes"):
        load_config("configs/debug.yaml", ["run.dist_timeout_minutes=0"])


@pytest.mark.slow
def test_deepspeed_launch_with_accelerate_use_cpu_refuses_before_step_1(tiny_shards, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    env["ACCELERATE_USE_CPU"] = "1"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    cmd += ["launch/cpu_2proc_deepspeed.yaml", "-m", "trainer.train", "--config"]
    cmd += ["configs/debug.yaml", f"data.shards={tiny_shards}", f"run.output_dir={tmp_path}"]
    cmd += ["run.log_every=1"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "asked for DeepSpeed but ACCELERATE_USE_CPU is set" in out
    assert "] step 1 |" not in out
    assert not (tmp_path / "debug" / "checkpoints").exists()


def test_validation_logs_its_wall_time_beside_the_process_group_timeout(
    tiny_shards, tmp_path, capsys
):
    from tests.trainer._runs import debug_config, logged_steps
    from trainer.train import train

    cfg = debug_config(tiny_shards, tmp_path, "run.max_steps=2", "run.dist_timeout_minutes=12")
    train(cfg)  # its log handler writes to stderr (logging.basicConfig in the trainer)
    rows = [json.loads(x) for x in (tmp_path / "debug" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val/wall_s" in r]
    assert val and all(r["val/dist_timeout_s"] == 720 and r["val/wall_s"] > 0 for r in val)
    assert "(process-group timeout 720 s)" in capsys.readouterr().err
    assert sorted(logged_steps(tmp_path / "debug")) == [1, 2]
