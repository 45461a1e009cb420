"""Training guardrails: each alarm fires on a crafted condition, with its message, in all
three sinks; the non-finite guard skips steps and stops; early stop; cost arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from codec.export_format import load_exported
from shards.reader import make_train_loader
from tests.trainer._runs import debug_config
from trainer.alarms import AlarmLog, Guard, batch_levels_dbfs
from trainer.checkpoint import TrainState, find_latest
from trainer.config import GuardConfig, SnrFloor
from trainer.cost import CostMeter, project_cost
from trainer.train import NonFiniteStop, train


class FakeTracker:
    def __init__(self):
        self.alerts, self.summaries = [], {}

    def alert(self, title, text):
        self.alerts.append((title, text))

    def summary(self, values):
        self.summaries.update(values)


def _guard(tmp_path: Path, **over) -> tuple[Guard, FakeTracker]:
    tracker = FakeTracker()
    cfg = GuardConfig(**{"warmup_steps": 10, **over})
    return Guard(cfg, AlarmLog(tmp_path / "alarms.jsonl", tracker), -26.0, 64), tracker


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_amplitude_alarms_after_warmup_in_all_sinks(tmp_path, caplog):
    g, tracker = _guard(tmp_path)
    g.check_validation(5, snr_db=3.0, rms_ratio=0.3, kbps=4)  # warm-up: silent
    assert g.alarms.raised == []
    with caplog.at_level("WARNING", logger="telucodec"):
        g.check_validation(10, snr_db=3.0, rms_ratio=0.3, kbps=4)
    assert "ALARM [amplitude_collapse] step 10" in caplog.text
    assert "RMS ratio 0.300" in caplog.text and "-10.5 dB" in caplog.text
    row = _rows(tmp_path / "alarms.jsonl")[0]
    assert row["kind"] == "amplitude_collapse" and row["step"] == 10 and row["rms_ratio"] == 0.3
    assert tracker.alerts[0][0] == "telucodec: amplitude_collapse"
    assert tracker.summaries["alarms/count"] == 1
    g.check_validation(12, snr_db=3.0, rms_ratio=0.35, kbps=4)  # still collapsed: no repeat
    assert len(g.alarms.raised) == 1
    g.check_validation(14, snr_db=3.0, rms_ratio=1.0, kbps=4)  # healthy: re-arms
    g.check_validation(16, snr_db=3.0, rms_ratio=2.5, kbps=4)
    assert g.alarms.kinds() == ["amplitude_collapse", "amplitude_blowup"]
    assert "above 2.0" in g.alarms.raised[-1]["message"]


def test_low_snr_needs_patience_validations_in_a_row(tmp_path):
    g, _ = _guard(tmp_path, snr_alarm_db=0.0, snr_patience=3)
    for step, snr in ((2, -1.0), (4, -2.0), (6, 0.5), (8, -1.0), (10, -1.0)):
        g.check_validation(step, snr, 1.0, 4)
    assert g.alarms.raised == []  # the run was broken at step 6
    g.check_validation(12, -3.25, 1.0, 4)
    assert g.alarms.kinds() == ["low_snr"]
    assert (
        "SNR -3.25 dB at 4 kbps is below 0.0 dB for 3 validations" in g.alarms.raised[0]["message"]
    )


def test_codebook_collapse_names_the_codebooks(tmp_path):
    g, _ = _guard(tmp_path, min_codebook_usage=0.1, min_codebook_perplexity_frac=0.05)
    healthy = ([0.9, 0.8], [40.0, 30.0], [6, 12])
    g.check_codebooks(20, *healthy)
    assert g.alarms.raised == []
    g.check_codebooks(22, [0.9, 0.05], [40.0, 2.0], [6, 61])
    msg = g.alarms.raised[0]["message"]
    assert g.alarms.kinds() == ["codebook_collapse"]
    assert "1 of 2 codebooks collapsed" in msg and "#1 usage 0.05 perplexity 2.0/64 dead 61" in msg
    assert g.alarms.raised[0]["dead_total"] == 67


def test_discriminator_overpowering_needs_a_window(tmp_path):
    g, _ = _guard(tmp_path, disc_loss_low=0.1, adv_loss_high=5.0, disc_window=3)
    g.check_gan_balance(2, 0.05, 8.0)
    g.check_gan_balance(4, 0.05, 8.0)
    g.check_gan_balance(6, 0.5, 8.0)  # balanced again: the window restarts
    g.check_gan_balance(8, 0.05, 8.0)
    g.check_gan_balance(10, 0.05, 8.0)
    assert g.alarms.raised == []
    g.check_gan_balance(12, 0.02, 9.0)
    assert g.alarms.kinds() == ["discriminator_overpowering"]
    assert "for 3 log steps in a row" in g.alarms.raised[0]["message"]


def test_batch_level_drift_on_real_shard_batches(tiny_shards, tmp_path):
    """Batches from a correctly prepped shard set sit near the target; the same batches
    gained by +20 dB (a pipeline bug) raise the alarm with the measured offset."""
    loader = make_train_loader(
        tiny_shards, batch_size=4, segment_samples=3200, seed=0, num_workers=0
    )
    batches = [b["audio"] for _, b in zip(range(8), loader, strict=False)]
    ok, _ = _guard(tmp_path / "ok")
    for i, x in enumerate(batches):
        ok.check_batch_level(i + 1, x)
    assert ok.alarms.raised == [], ok.alarms.raised
    bad, _ = _guard(tmp_path / "bad", level_window_crops=16)
    for i, x in enumerate(batches):
        bad.check_batch_level(i + 1, x * 10.0)
    assert bad.alarms.kinds() == ["batch_level"]
    row = bad.alarms.raised[0]
    assert 15.0 < row["offset_db"] < 25.0
    assert "from the -26.5 dBFS the manifest's loudness target implies" in row["message"]
    # silence is not counted as level
    assert batch_levels_dbfs(torch.zeros(3, 1, 100)) == []


def test_early_stop_policy_unit():
    g = Guard(GuardConfig(min_snr_db_after_steps=SnrFloor(100, 0.0)), AlarmLog(None), -26, 64)
    assert g.early_stop(99, -5.0) is None
    assert g.early_stop(100, 0.5) is None
    assert "below 0.0 dB at step 100" in g.early_stop(100, -5.0)


def test_cost_projection_arithmetic():
    # 2 GPUs, 1800 s so far; rate measured from step 100 (at 600 s) to step 400: 4 s/step;
    # 600 steps left -> 2400 s more -> 4200 s wall = 1.1667 h; x2 GPUs x 2.5/h = 5.8333
    rep = project_cost(
        elapsed_s=1800,
        step=400,
        max_steps=1000,
        processes=2,
        hourly_cost=2.5,
        rate_since_step=100,
        rate_since_s=600,
    )
    assert rep.device_hours == pytest.approx(1.0)
    assert rep.cost == pytest.approx(2.5)
    assert rep.projected_total_hours == pytest.approx(4200 / 3600)
    assert rep.projected_total_device_hours == pytest.approx(2 * 4200 / 3600)
    assert rep.projected_total_cost == pytest.approx(2 * 4200 / 3600 * 2.5)
    no_rate = project_cost(elapsed_s=10, step=1, max_steps=5, processes=1, hourly_cost=None)
    assert no_rate.cost is None and no_rate.projected_total_hours is None

    meter = CostMeter(4, 3.0, on_gpu=True, warmup=2, max_steps=10)
    meter.t0 = 0.0
    logs, line = meter.update(1, now=100.0)
    assert line is None and logs["cost/device_hours"] == pytest.approx(4 * 100 / 3600)
    logs, line = meter.update(2, now=110.0)  # warm-up mark: step 2 at 110 s
    assert line is None
    logs, line = meter.update(4, now=130.0)  # 10 s/step -> 130 + 6 x 10 = 190 s
    assert logs["cost/projected_total_hours"] == pytest.approx(190 / 3600)
    assert logs["cost/projected_total_cost"] == pytest.approx(4 * 190 / 3600 * 3.0)
    assert "projection to step 10" in line and "GPU-hours" in line
    assert meter.update(6, now=150.0)[1] is None  # printed once


def test_cost_continues_across_resume():
    """A resumed session adds to the run's totals: 1 h on 2 GPUs before, 1 GPU now."""
    before = project_cost(
        elapsed_s=1800,
        step=400,
        max_steps=1000,
        processes=1,
        hourly_cost=2.0,
        rate_since_step=100,
        rate_since_s=600,
        prior_wall_s=3600,
        prior_device_s=7200,
    )
    assert before.device_hours == pytest.approx(2.5)  # 2 GPU-h before + 0.5 now
    assert before.cost == pytest.approx(5.0)
    # 4 s/step x 600 steps left = 2400 s more, on 1 GPU
    assert before.projected_total_hours == pytest.approx((3600 + 1800 + 2400) / 3600)
    assert before.projected_total_device_hours == pytest.approx((7200 + 1800 + 2400) / 3600)

    state = TrainState(wall_seconds=100.0, device_seconds=200.0)
    meter = CostMeter(2, None, on_gpu=False, warmup=1, max_steps=10)
    meter.t0 = 0.0
    meter.resume_from(state)
    logs, _ = meter.update(5, now=50.0)
    assert logs["cost/device_hours"] == pytest.approx((200 + 2 * 50) / 3600)
    meter.store(state, now=60.0)
    assert state.wall_seconds == pytest.approx(160.0)
    assert state.device_seconds == pytest.approx(320.0)


# ----------------------------------------------------------------- end to end (debug preset)


def _cfg(shards: Path, out: Path, *extra: str):
    # dead-code replacement every step: a skipped step must also skip the replacement
    return debug_config(shards, out, "run.dead_code_every=1", *extra)


def _poison_loader(monkeypatch, bad_batches: set[int]):
    """Replace the trainer's loader: batches whose 1-based index is in ``bad_batches`` carry
    NaN (a data bug); with grad_accum 1, batch i is optimizer step i."""
    import trainer.batches as tb

    real = tb.make_train_loader

    class Poisoned:
        def __init__(self, loader):
            self.loader = loader

        def __iter__(self):
            for i, batch in enumerate(self.loader, start=1):
                if i in bad_batches:
                    batch = dict(batch, audio=torch.full_like(batch["audio"], math.nan))
                yield batch

    monkeypatch.setattr(tb, "make_train_loader", lambda *a, **k: Poisoned(real(*a, **k)))


def test_nonfinite_step_is_skipped_and_training_goes_on(tiny_shards, tmp_path, monkeypatch):
    _poison_loader(monkeypatch, {3})
    cfg = _cfg(tiny_shards, tmp_path, "run.max_steps=4", "run.gpu_hourly_cost=2.0")
    res = train(cfg)
    assert res.steps == 4 and res.stop_reason == "max_steps"
    # without the skip, AdamW would have written NaN into every weight and moment
    codec, _ = load_exported(res.export_dir)
    assert all(torch.isfinite(p).all() for p in codec.parameters())
    assert all(math.isfinite(v) for v in res.last_losses.values())
    rows = _rows(cfg.run.run_dir / "alarms.jsonl")
    nf = [r for r in rows if r["kind"] == "nonfinite"]
    assert len(nf) == 1 and nf[0]["step"] == 3
    assert "non-finite generator and discriminator gradient norm" in nf[0]["message"]
    metrics = [json.loads(x) for x in (cfg.run.run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [m for m in metrics if "guard/nonfinite_steps" in m][-1]
    assert last["guard/nonfinite_steps"] == 1
    assert last["cost/device_hours"] > 0 and last["cost/spent"] == pytest.approx(
        2.0 * last["cost/device_hours"]
    )


def test_nonfinite_in_a_row_stops_and_keeps_last_good_checkpoint(
    tiny_shards, tmp_path, monkeypatch
):
    _poison_loader(monkeypatch, {3, 4, 5, 6})
    cfg = _cfg(tiny_shards, tmp_path, "run.max_steps=8", "guard.max_nonfinite_in_a_row=2")
    with pytest.raises(NonFiniteStop, match=r"stopped at step 4: 2 optimizer steps in a row"):
        train(cfg)
    latest = find_latest(cfg.run.run_dir / "checkpoints")
    assert latest is not None and latest.name == "step_00000002"  # step 4 was not saved
    kinds = [r["kind"] for r in _rows(cfg.run.run_dir / "alarms.jsonl")]
    assert kinds == ["nonfinite"]


def test_early_stop_ends_the_run_cleanly_at_the_right_step(tiny_shards, tmp_path):
    # an impossible floor from step 3 on: validations at 2 (too early), 4 (stop)
    cfg = _cfg(
        tiny_shards,
        tmp_path,
        "run.max_steps=6",
        "guard.min_snr_db_after_steps={steps: 3, snr_db: 60}",
    )
    res = train(cfg)
    assert res.steps == 4
    assert res.stop_reason.startswith("early stop: validation SNR") and "at step 4" in (
        res.stop_reason
    )
    assert res.checkpoint is not None and res.checkpoint.name == "step_00000004"
    assert "early_stop" in [r["kind"] for r in res.alarms]
