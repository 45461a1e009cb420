"""Preflight: a healthy debug config passes; broken ones fail with the right message."""

from __future__ import annotations

import pytest
import torch

from trainer.config import load_config
from trainer.preflight import main, run_preflight
from trainer.train import main as train_main


def _cfg(shards, *extra):
    return load_config("configs/debug.yaml", [f"data.shards={shards}", *extra])


def _failed(res) -> dict[str, str]:
    return {c.name: c.detail for c in res.failed()}


def test_debug_preset_passes_and_leaves_rng_alone(tiny_shards):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    res = run_preflight(_cfg(tiny_shards), torch.device("cpu"))
    assert torch.equal(torch.random.get_rng_state(), before)  # training's stream untouched
    assert res.ok, res.report()
    step, snr, rms = res.history[-1]
    assert step == 400 and snr >= 3.0 and abs(rms - 1) <= 0.25
    assert res.history[0][1] < 0  # an untrained codec does not pass by accident
    assert "PASSED" in res.report()


def test_learning_rate_far_too_low_is_named(tiny_shards, capsys):
    rc = main(
        ["--config", "configs/debug.yaml", f"data.shards={tiny_shards}", "optim.lr_g=1e-8"]
        + ["preflight.steps=40"]
    )
    assert rc == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "[FAIL] overfit SNR" in out
    assert "mel loss barely moved" in out and "learning rate too low (optim.lr_g 1e-08" in out


def test_input_beyond_decoder_range_is_named(tiny_shards):
    res = run_preflight(
        _cfg(tiny_shards, "preflight.input_gain_db=20", "preflight.steps=60"),
        torch.device("cpu"),
    )
    assert not res.ok
    failed = _failed(res)
    assert "samples at or beyond full scale" in failed["full scale"]
    assert "decoder ends in tanh" in failed["full scale"]
    # the batch is still finite and the segment valid, so the overfit ran and reported
    assert any(c.name == "overfit SNR" for c in res.checks)


def test_config_vs_manifest_checks(tiny_shards):
    res = run_preflight(
        _cfg(tiny_shards, "data.loudness_target_lufs=-20", "preflight.steps=1"),
        torch.device("cpu"),
    )
    assert (
        "shards normalised to -26.0 LUFS, config expects -20.0 LUFS"
        in _failed(res)["loudness target"]
    )


def test_train_preflight_switch_aborts(tiny_shards, tmp_path, capsys):
    rc = train_main(
        ["--config", "configs/debug.yaml", f"data.shards={tiny_shards}"]
        + [f"run.output_dir={tmp_path}", "--preflight", "optim.lr_g=1e-8", "preflight.steps=5"]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "preflight failed; not starting the run" in err and "overfit SNR" in err
    assert not (tmp_path / "debug" / "checkpoints").exists()


@pytest.mark.parametrize("bad", ["preflight.steps=0", "preflight.rms_tolerance=1.5"])
def test_bad_preflight_config_named(bad, capsys):
    assert main(["--config", "configs/debug.yaml", bad]) == 2
    assert bad.split("=")[0] in capsys.readouterr().err
