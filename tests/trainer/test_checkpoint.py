"""Crash-safe checkpointing: partial saves are never loaded; pruning keeps last K + best."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator

from trainer.checkpoint import CheckpointManager, TrainState, find_latest, is_complete


def _manager(tmp_path, keep_last=2):
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    model, opt = acc.prepare(model, opt)
    state = TrainState()
    return acc, model, state, CheckpointManager(acc, tmp_path / "ck", keep_last)


def test_interrupted_save_is_ignored(tmp_path):
    _, _, state, mgr = _manager(tmp_path)
    state.step = 10
    good = mgr.save(state, "cfg: 1\n")
    assert is_complete(good) and find_latest(mgr.root) == good
    # a crash in the middle of the next save leaves a .partial folder and no COMPLETE marker
    crashed = mgr.root / "step_00000020.partial"
    crashed.mkdir()
    (crashed / "model.safetensors").write_bytes(b"half")
    assert find_latest(mgr.root) == good
    # and if the crash hit between rename and pointer update, the scan still finds only
    # complete checkpoints
    (mgr.root / "latest").unlink()
    half_renamed = mgr.root / "step_00000030"
    half_renamed.mkdir()
    assert find_latest(mgr.root) == good


def test_prune_keeps_last_k_and_best(tmp_path):
    _, _, state, mgr = _manager(tmp_path, keep_last=2)
    for step, best in ((1, True), (2, False), (3, False), (4, False)):
        state.step = step
        mgr.save(state, "", is_best=best)
    names = sorted(p.name for p in mgr.root.glob("step_*"))
    assert names == ["step_00000001", "step_00000003", "step_00000004"]
    assert (mgr.root / "best").read_text() == "step_00000001"
    assert (mgr.root / "latest").read_text() == "step_00000004"


def test_state_round_trip(tmp_path):
    acc, model, state, mgr = _manager(tmp_path)
    state.step, state.samples_seen, state.data_batches, state.wandb_run_id = 7, 70, 7, "abc"
    path = mgr.save(state, "")
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    state.step = 0
    state = mgr.load(path)
    assert (state.step, state.samples_seen, state.data_batches, state.wandb_run_id) == (
        7,
        70,
        7,
        "abc",
    )
    assert torch.equal(model.weight.detach(), before)


def test_a_best_validation_is_saved_whatever_the_interval(tmp_path):
    acc = Accelerator(cpu=True)
    ck = CheckpointManager(acc, tmp_path, keep_last=2, every_steps=5)
    assert ck.due(5, applied=True, done=False, is_best=False)  # the interval
    assert not ck.due(2, applied=True, done=False, is_best=False)
    assert ck.due(2, applied=True, done=False, is_best=True)  # a new best between intervals
    assert ck.due(3, applied=True, done=True, is_best=False)  # the end of the run
    # a skipped step's buffers saw the bad batch: saved only when the run ends there
    assert not ck.due(5, applied=False, done=False, is_best=True)
    assert ck.due(5, applied=False, done=True, is_best=False)


@pytest.mark.slow
def test_validation_every_2_checkpoints_every_5_keeps_each_best(tiny_shards, tmp_path):
    from tests.trainer._runs import debug_config
    from trainer.checkpoint import STATE_FILE, find_latest, is_complete, step_dir_name
    from trainer.train import train

    cfg = debug_config(tiny_shards, tmp_path, "run.max_steps=6", "validation.every_steps=2",
                       "checkpoint.every_steps=5", "checkpoint.keep_last=10")  # fmt: skip
    train(cfg)
    root = tmp_path / "debug" / "checkpoints"
    saved = sorted(int(p.name[5:]) for p in root.glob("step_*") if is_complete(p))
    # step 2's validation is the first, so always a new best; 5 is the interval, 6 the end
    assert {2, 5, 6} <= set(saved) and set(saved) <= {2, 4, 5, 6}
    best_step = json.loads((find_latest(root) / STATE_FILE).read_text())["best_step"]
    assert best_step in (2, 4, 6)
    assert (root / "best").read_text().strip() == step_dir_name(best_step)
    assert is_complete(root / step_dir_name(best_step))
