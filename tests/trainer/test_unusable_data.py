"""Shard sets training cannot use are refused before step 1, in one line saying the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shards import synth
from shards.prep import PrepConfig, prep_corpus
from tests.trainer._runs import debug_config
from trainer.preflight import run_preflight
from trainer.train import main as train_main


@pytest.fixture(scope="module")
def no_val_shards(tmp_path_factory) -> Path:
    """One 12 s recording with the default split: too short to hold out time, so the val
    split is empty (prep says so in its report)."""
    root = tmp_path_factory.mktemp("noval")
    synth.write(root / "in" / "a.wav", synth.speech_like(12.0, 16_000), 16_000, "PCM_16")
    res = prep_corpus(root / "in", root / "shards", PrepConfig(workers=1), progress=False)
    assert res.manifest.splits["val"].samples == 0
    assert res.report["split_warning"].startswith("the val split is empty")
    return root / "shards"


def test_preflight_fails_on_an_empty_val_split(no_val_shards, tmp_path):
    res = run_preflight(debug_config(no_val_shards, tmp_path), torch.device("cpu"))
    assert not res.ok
    (check,) = res.failed()
    assert check.name == "splits"
    assert "the val split is empty" in check.detail and "--split time" in check.detail


def test_training_refuses_an_empty_val_split_before_step_1(no_val_shards, tmp_path, capsys):
    rc = train_main(
        ["--config", "configs/debug.yaml", f"data.shards={no_val_shards}"]
        + [f"run.output_dir={tmp_path}", "run.max_steps=3", "validation.every_steps=2"]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "the val split is empty, and training validates on it" in err[0]
    assert "--split time --val-seconds" in err[0]
    assert not list(tmp_path.rglob("metrics.jsonl")) and not list(tmp_path.rglob("step_*"))
