"""benchmarks/bench_init.py: the speaker split its fine-tune-vs-scratch comparison rests on."""

from __future__ import annotations

import pytest

from benchmarks.bench_init import TELUGU_SPEAKER, StageStopped, completed, split_speakers
from trainer.train import TrainResult


def test_halves_share_no_speaker_and_keep_every_speaker(tmp_path):
    for spk in ("SPKF01", "SPKF02", "SPKM01", "SPKM02", "SPKM03"):
        for i in range(4):
            (tmp_path / "happy").mkdir(exist_ok=True)
            (tmp_path / "happy" / f"S11_HAP_C0{i}_{spk}_V1.flac").write_bytes(b"")
    (tmp_path / "no_speaker.flac").write_bytes(b"")
    halves = split_speakers(tmp_path, TELUGU_SPEAKER, None)
    assert set(halves["pretrain"]) == {"SPKF01", "SPKM01", "SPKM03"}
    assert set(halves["target"]) == {"SPKF02", "SPKM02"}
    assert all(len(fs) == 4 for h in halves.values() for fs in h.values())
    small = split_speakers(tmp_path, TELUGU_SPEAKER, 4)
    assert {k: len(v) for k, v in small["target"].items()} == {"SPKF02": 2, "SPKM02": 2}


def test_a_stopped_stage_ends_the_benchmark(tmp_path):
    """A SIGTERM makes the trainer save and return; the benchmark must not go on to the next
    stage as if the budget had been spent."""
    done = TrainResult(tmp_path, 40, {}, None, None, None, "max_minutes (5.0)")
    assert completed(done, "pretrain") is done
    cut = TrainResult(tmp_path, 12, {}, None, None, None, "stop requested (SIGTERM)")
    with pytest.raises(StageStopped, match=r"finetune: stop requested \(SIGTERM\) at step 12"):
        completed(cut, "finetune")
