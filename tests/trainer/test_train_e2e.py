"""The debug preset end to end on CPU: train, validate, checkpoint, resume, export."""

from __future__ import annotations

import json
import math

import pytest
import torch

from codec.export_format import load_exported
from telucodec.errors import UserInputError
from tests.trainer._runs import debug_config, logged_steps
from trainer.checkpoint import find_latest, read_checkpoint_info
from trainer.train import main, train


def test_train_validate_checkpoint_export(tiny_shards, tmp_path):
    cfg = debug_config(tiny_shards, tmp_path, "run.max_steps=4")
    res = train(cfg)
    assert res.steps == 4 and res.stop_reason == "max_steps"
    assert all(math.isfinite(v) for v in res.last_losses.values())
    assert {"mel", "adversarial", "feature_matching", "codebook", "commitment", "disc"} <= set(
        res.last_losses
    )
    # validation ran at each configured bitrate and produced finite numbers with a verdict
    assert [r.n_quantizers for r in res.validation.per_bitrate] == [1, 2, 4]
    for r in res.validation.per_bitrate:
        assert math.isfinite(r.snr_db) and math.isfinite(r.mel_distance) and r.diagnosis
        assert -1.0 < r.est_min <= r.est_max < 1.0  # tanh output range
    # checkpoints: the latest is complete and names its step; keep_last=2 pruned nothing yet
    latest = find_latest(cfg.run.run_dir / "checkpoints")
    assert latest is not None and latest.name == "step_00000004"
    assert read_checkpoint_info(latest)["step"] == 4
    assert (latest / "config.yaml").exists()
    # export: reloads into a working codec that reproduces the trained model's output
    codec, meta = load_exported(res.export_dir)
    assert meta["sample_rate"] == 16000 and meta["loudness_target_lufs"] == -26.0
    assert len(meta["model_id"]) == 16
    x = torch.randn(1, 1, 3200) * 0.1
    with torch.no_grad():
        y = codec(x, n_quantizers=4).audio
    assert y.shape == x.shape and torch.isfinite(y).all()
    # a fresh start into a run folder with checkpoints is refused, with advice
    with pytest.raises(UserInputError, match="--resume"):  # a user error: exit 2, one line
        train(cfg)


def test_resume_matches_uninterrupted(tiny_shards, tmp_path):
    """Run 4 steps straight; run 2 steps, stop, resume to 4. Steps 3 and 4 must give the
    same losses (same weights, optimizer moments, RNG, data position). On CPU the runs are
    bitwise deterministic; we allow 1e-5 relative for library differences."""
    full = debug_config(tiny_shards, tmp_path / "a", "run.max_steps=4")
    train(full)
    part = debug_config(tiny_shards, tmp_path / "b", "run.max_steps=2")
    train(part)
    resumed = debug_config(tiny_shards, tmp_path / "b", "run.max_steps=4")
    res = train(resumed, resume="auto")
    assert res.steps == 4
    a, b = logged_steps(full.run.run_dir), logged_steps(resumed.run.run_dir)
    for step in (3, 4):
        for key in ("loss/mel", "loss/disc", "loss/adversarial", "loss/codebook", "loss/gen_total"):
            assert b[step][key] == pytest.approx(a[step][key], rel=1e-5), (step, key)
        assert b[step]["progress/samples_seen"] == a[step]["progress/samples_seen"]
        assert b[step]["lr/generator"] == pytest.approx(a[step]["lr/generator"], rel=1e-12)
    # device time continues from what the first session's last checkpoint recorded
    first = read_checkpoint_info(resumed.run.run_dir / "checkpoints" / "step_00000002")
    assert first["device_seconds"] > 0 and first["wall_seconds"] == first["device_seconds"]
    assert b[3]["cost/device_hours"] > first["device_seconds"] / 3600
    final = read_checkpoint_info(find_latest(resumed.run.run_dir / "checkpoints"))
    assert final["device_seconds"] > b[3]["cost/device_hours"] * 3600


def test_cli_aliases_and_bad_config(tiny_shards, tmp_path, capsys):
    rc = main(
        [
            "--config",
            "configs/debug.yaml",
            f"data.shards={tiny_shards}",
            "--checkpoint_dir",
            str(tmp_path),
            "--experiment_name",
            "cli",
            "--batch_size",
            "3",
            "--max_steps",
            "2",
            "--print-config",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "batch_size: 3" in out and "name: cli" in out and "max_steps: 2" in out
    rc = main(["--config", "configs/debug.yaml", "data.segment_samples=1000"])
    assert rc == 2
    assert "data.segment_samples" in capsys.readouterr().err


def test_sample_rate_mismatch_named(tiny_shards, tmp_path):
    cfg = debug_config(
        tiny_shards, tmp_path, "codec.sample_rate=24000", "data.segment_samples=3200"
    )
    with pytest.raises(ValueError, match="codec.sample_rate"):
        train(cfg)


@pytest.fixture
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state; a test that changes precision must start
    from (and leave) a clean one."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_autocast_and_grad_accumulation_on_cpu(tiny_shards, tmp_path, fresh_accelerator_state):
    """The mixed-precision path (bf16 autocast; CPU supports it) with 2 micro-batches per
    step: losses stay finite and fp32 (the spectral islands), samples are counted per
    optimizer step, and the data stream advanced two batches per step."""
    cfg = debug_config(
        tiny_shards,
        tmp_path,
        "run.max_steps=2",
        "run.precision=bf16",
        "optim.grad_accum=2",
        "validation.every_steps=100",
    )
    res = train(cfg)
    assert res.steps == 2
    assert all(math.isfinite(v) for v in res.last_losses.values())
    rows = logged_steps(cfg.run.run_dir)
    assert rows[2]["progress/samples_seen"] == 2 * cfg.data.batch_size * 2
    state = json.loads((res.checkpoint / "train_state.json").read_text())
    assert state["data_batches"] == 4
