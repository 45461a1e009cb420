"""Runs that could not go as configured are refused before step 1 or corrected: a shard set
without a validation split, a learning rate changed for a resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from shards import synth
from shards.prep import PrepConfig, prep_corpus
from tests.trainer._runs import debug_config, logged_steps
from trainer.checkpoint import find_latest
from trainer.config import ConfigError
from trainer.preflight import run_preflight
from trainer.train import main as train_main
from trainer.train import train


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


def test_resume_trains_with_the_configured_learning_rate(tiny_shards, tmp_path, capfd):
    """A resumed run with a new optim.lr_g / lr_d trains with it (and says so); the
    checkpoint's rates used to win while the log and config.yaml showed the new ones."""
    first = debug_config(
        tiny_shards, tmp_path, "run.max_steps=2", "optim.lr_g=3e-4", "optim.lr_d=3e-4"
    )
    train(first)
    resumed = debug_config(
        tiny_shards, tmp_path, "run.max_steps=3", "optim.lr_g=1e-4", "optim.lr_d=2e-4"
    )
    train(resumed, resume="auto")
    err = capfd.readouterr().err
    assert "generator lr changed on resume: 0.0003 -> 0.0001" in err
    assert "discriminator lr changed on resume: 0.0003 -> 0.0002" in err
    gamma = resumed.optim.lr_decay
    row = logged_steps(resumed.run.run_dir)[3]
    assert row["lr/generator"] == pytest.approx(1e-4 * gamma**3, rel=1e-9)
    assert row["lr/discriminator"] == pytest.approx(2e-4 * gamma**3, rel=1e-9)
    # what the optimizers and schedules hold (and saved) after the resumed step
    ckpt = find_latest(resumed.run.run_dir / "checkpoints")
    assert ckpt.name == "step_00000003"
    for suffix, want in (("", 1e-4), ("_1", 2e-4)):
        opt = torch.load(ckpt / f"optimizer{suffix}.bin", weights_only=True)
        sched = torch.load(ckpt / f"scheduler{suffix}.bin", weights_only=True)
        assert sched["base_lrs"] == [want]
        assert opt["param_groups"][0]["lr"] == pytest.approx(want * gamma**3, rel=1e-9)


def test_a_corrupt_training_sample_is_skipped_and_counted(tiny_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    tar = shards / "train-000000.tar"
    data = bytearray(tar.read_bytes())
    at = data.index(b"fLaC")  # the first FLAC member: no longer a FLAC stream
    data[at : at + 4] = b"XXXX"
    tar.write_bytes(bytes(data))
    cfg = debug_config(shards, tmp_path / "run", "run.max_steps=2", "validation.every_steps=10")
    with pytest.raises(ValueError, match="more than data.max_bad_sample_fraction=0.01"):
        train(cfg)  # the default share: 1 bad of the 8 training chunks is too many
    cfg = debug_config(
        shards,
        tmp_path / "run2",
        "run.max_steps=2",
        "validation.every_steps=10",
        "data.max_bad_sample_fraction=0.2",
    )
    res = train(cfg)
    assert res.steps == 2
    rows = logged_steps(cfg.run.run_dir)
    assert [rows[s]["data/skipped_samples"] for s in (1, 2)] == [1, 1]


def test_max_bad_sample_fraction_is_validated(tiny_shards, tmp_path):
    with pytest.raises(ConfigError, match=r"data.max_bad_sample_fraction.*\[0, 1\)"):
        debug_config(tiny_shards, tmp_path, "data.max_bad_sample_fraction=1.5")
