"""Resuming on another number of processes: DDP resumes, warns, and seeds the ranks the
checkpoint had no RNG state for; DeepSpeed (whose ZeRO optimizer state is split per rank)
is refused before loading, with what to do instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer._runs import logged_steps
from trainer.run import resumed_rank_seed

REPO = Path(__file__).resolve().parents[2]


def test_resumed_rank_seeds_differ_per_rank_and_from_fresh_seeds():
    seeds = {resumed_rank_seed(0, 100, r) for r in range(64)}
    assert len(seeds) == 64
    assert not seeds & {0 + r for r in range(64)}  # a fresh run seeds rank r with seed + r
    assert resumed_rank_seed(0, 100, 3) != resumed_rank_seed(0, 200, 3)


def _train(tmp_path: Path, shards: Path, launch: list[str], *extra: str):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch, "-m", "trainer.train"]
    cmd += ["--config", "configs/debug.yaml", f"data.shards={shards}", f"run.output_dir={tmp_path}"]
    cmd += ["run.log_every=1", "checkpoint.every_steps=2", "validation.every_steps=1000", *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


ONE_CPU = ["--num_processes", "1", "--cpu", "--num_machines", "1", "--mixed_precision", "no"]


@pytest.mark.slow
def test_ddp_resumes_on_more_processes_and_seeds_the_new_rank(tiny_shards, tmp_path):
    rc, out = _train(tmp_path, tiny_shards, ONE_CPU, "run.max_steps=2")
    assert rc == 0, out[-3000:]
    two = ["--config_file", "launch/cpu_2proc.yaml"]
    rc, out = _train(tmp_path, tiny_shards, two, "run.max_steps=4", "--resume")
    assert rc == 0, out[-3000:]
    assert "checkpoint was written with 1 processes, now 2" in out
    seed = resumed_rank_seed(0, 2, 1)
    assert f"[rank 1] no RNG state for this rank in the checkpoint: seeded with {seed}" in out
    assert "[rank 0] no RNG state" not in out  # rank 0 has its saved stream back
    m = logged_steps(tmp_path / "debug")
    assert sorted(m) == [1, 2, 3, 4]
    assert [m[s]["progress/world_size"] for s in (1, 2, 3, 4)] == [1, 1, 2, 2]


@pytest.mark.slow
def test_deepspeed_refuses_another_world_size_before_loading(tiny_shards, tmp_path):
    ds = ["--config_file", "launch/cpu_2proc_deepspeed.yaml"]
    rc, out = _train(tmp_path, tiny_shards, ds, "run.max_steps=2")
    assert rc == 0, out[-3000:]
    rc, out = _train(tmp_path, tiny_shards, [*ds, "--num_processes", "1"], "run.max_steps=4",
                     "--resume")  # fmt: skip
    assert rc != 0
    assert "written by 2 DeepSpeed process(es), this launch has 1" in out
    assert "relaunch with --num_processes 2" in out and "model.init_from" in out
    # one line from the trainer (the launcher adds its own report of the child's exit 2)
    assert "telucodec-train: error:" in out and "ZeRORuntimeException" not in out
    assert 'trainer/checkpoint.py", line' not in out and 'trainer/train.py", line' not in out
    assert sorted(logged_steps(tmp_path / "debug")) == [1, 2]
