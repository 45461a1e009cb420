"""Config loading: presets, overrides, old-script aliases, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import ConfigError, config_from_dict, load_config, parse_overrides, save_config

PRESETS = sorted(Path("configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_presets_load_and_round_trip(preset, tmp_path):
    cfg = load_config(preset)
    assert cfg.data.segment_samples % cfg.codec.hop_length == 0
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_production_preset_bitrates():
    cfg = load_config("configs/telugu16k.yaml")
    assert cfg.codec.hop_length == 320 and cfg.codec.frame_rate == 50
    assert cfg.codec.bitrate_kbps() == pytest.approx(6.0)
    assert cfg.codec.bitrate_kbps(8) == pytest.approx(4.0)


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        "configs/debug.yaml",
        [
            "data.batch_size=5",
            "validation.kbps=[0.3, 1.2]",
            "run.max_minutes=null",
            "wandb.enabled=true",
        ],
    )
    assert cfg.data.batch_size == 5
    assert cfg.validation.kbps == (0.3, 1.2)
    assert cfg.run.max_minutes is None and cfg.wandb.enabled is True


def test_old_script_flags():
    tree = parse_overrides(
        [
            "--batch_size",
            "8",
            "--learning_rate=3e-4",
            "--segment_length",
            "16000",
            "--sample_rate",
            "16000",
            "--checkpoint_dir",
            "ck",
            "--experiment_name",
            "exp",
            "--use_wandb",
        ]
    )
    assert tree == {
        "data": {"batch_size": 8, "segment_samples": 16000},
        "optim": {"lr_g": 3e-4, "lr_d": 3e-4},
        "codec": {"sample_rate": 16000},
        "run": {"output_dir": "ck", "name": "exp"},
        "wandb": {"enabled": True},
    }


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("data.batch_size=0", "data.batch_size"),
        ("data.segment_samples=1000", "data.segment_samples"),  # not a multiple of hop 320
        ("run.precision=fp8", "run.precision"),
        ("optim.lr_decay=1.5", "optim.lr_decay"),
        ("data.batch_size=abc", "data.batch_size"),
        ("data.bogus=1", "bogus"),
        ("codec.n_codebooks=0", "n_codebooks"),
        ("validation.every_minutes=0", "validation.every_minutes"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises((ConfigError, ValueError), match=field):
        load_config("configs/debug.yaml", [override])


def test_unknown_flag_and_missing_file():
    with pytest.raises(ConfigError, match="--nope"):
        parse_overrides(["--nope", "1"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("configs/missing.yaml")
    with pytest.raises(ConfigError, match="unknown config field"):
        config_from_dict({"trainer": {}})


def test_speed_switches_default_and_override(tmp_path):
    """run.compile off, cuDNN benchmark on, optim.fused auto (None) unless told; the YAML
    round trip keeps an explicit choice, and a non-boolean names its field."""
    cfg = load_config("configs/telugu16k.yaml")
    assert (cfg.run.compile, cfg.run.cudnn_benchmark, cfg.optim.fused) == (False, True, None)
    cfg = load_config(
        "configs/debug.yaml", ["run.compile=true", "run.cudnn_benchmark=false", "optim.fused=no"]
    )
    assert (cfg.run.compile, cfg.run.cudnn_benchmark, cfg.optim.fused) == (True, False, False)
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").optim.fused is False
    assert load_config("configs/debug.yaml", ["optim.fused=null"]).optim.fused is None
    with pytest.raises(ConfigError, match="optim.fused"):
        load_config("configs/debug.yaml", ["optim.fused=sometimes"])
    with pytest.raises(ConfigError, match="run.compile"):
        load_config("configs/debug.yaml", ["run.compile=maybe"])


def test_bare_no_is_a_precision_not_a_bool():
    # YAML 1.1 reads `no` as False; the str field must still get "no" (fp32)
    assert load_config("configs/debug.yaml", ["run.precision=no"]).run.precision == "no"
    assert load_config("configs/debug.yaml", ["run.precision=bf16"]).run.precision == "bf16"


def test_learning_rate_flag_sets_both_optimizers():
    """The old scripts' one learning rate is both rates, not the generator's alone."""
    cfg = load_config("configs/debug.yaml", ["--learning_rate", "3e-4"])
    assert cfg.optim.lr_g == cfg.optim.lr_d == 3e-4


def test_mel_spec_is_one_nested_section_that_round_trips(tmp_path):
    cfg = load_config("configs/debug.yaml", ["loss.mel.fmax=6000", "loss.mel.mag_weight=0.5"])
    assert cfg.loss.mel.n_mels == (10, 20, 40) and cfg.loss.mel.window_lengths == (128, 256, 512)
    assert cfg.loss.mel.fmax == 6000 and cfg.loss.mel.mag_weight == 0.5
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").loss.mel == cfg.loss.mel


@pytest.mark.parametrize("old, new", [("mel_n_mels", "n_mels"), ("mel_fmax", "fmax")])
def test_old_flat_mel_keys_name_the_new_key(old, new):
    with pytest.raises(ConfigError, match=rf"`loss\.{old}` is now `loss\.mel\.{new}`"):
        config_from_dict({"loss": {old: [10, 20]}})
    with pytest.raises(ConfigError, match=rf"`loss\.mel\.{new}`"):
        load_config("configs/debug.yaml", [f"loss.{old}=8000"])
