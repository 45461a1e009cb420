"""``model.init_from`` (generator from a pretrained source, discriminator fresh, step 0 only)
and ``optim.disc_warmup_steps`` (generator frozen while the discriminator trains)."""

from __future__ import annotations

import shutil

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

from codec.build import build_codec, build_discriminator
from codec.dac_convert import DAC_RELEASED, architecture_mismatch, config_from_dac_kwargs
from codec.export_format import export_state_dict, read_export
from tests.codec.test_dac_import import TINY_KWARGS, to_dac_state
from tests.trainer._runs import debug_config
from trainer.config import ConfigError, load_config
from trainer.engine import build_accelerator
from trainer.init_from import load_init_weights
from trainer.step import build_step_objects
from trainer.train import main, train


def params(state: dict) -> dict:
    """Trained tensors only (the codebook-usage statistics change in any forward)."""
    return {k: v for k, v in state.items() if k != "quantizer.usage_ema"}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture
def source(tiny_shards, tmp_path):
    """An export of a debug-preset generator whose weights differ from the seeded init."""
    cfg = debug_config(tiny_shards, tmp_path / "src")
    torch.manual_seed(123)
    codec = build_codec(cfg.codec)
    with torch.no_grad():
        for p in codec.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return export_state_dict(codec.state_dict(), cfg.codec, -26.0, -1.0, tmp_path / "export")


def test_generator_from_source_discriminator_fresh(tiny_shards, tmp_path, source):
    cfg = debug_config(tiny_shards, tmp_path, f"model.init_from={source}")
    acc = build_accelerator(cfg)
    eng, _ = build_step_objects(acc, cfg, init_generator=True)
    fresh, _ = build_step_objects(acc, cfg, init_generator=False)
    want, _, _ = read_export(source)
    assert_same(eng.codec.state_dict(), want)
    # the discriminator is the one a run without init_from starts with
    assert_same(eng.discriminator.state_dict(), fresh.discriminator.state_dict())
    with pytest.raises(AssertionError):
        assert_same(params(fresh.codec.state_dict()), params(want))


def test_warmup_freezes_generator_and_resume_never_reapplies(tiny_shards, tmp_path, source):
    """3 warm-up steps: generator weights exactly the source's (an aggressive dead-code
    setting that would replace codes every step must not act either), discriminator trained.
    Then the source is deleted and the run resumed: it continues from its checkpoint
    without reading init_from, and step 4 trains the generator."""
    extra = [
        f"model.init_from={source}",
        "optim.disc_warmup_steps=3",
        "run.dead_code_every=1",
        "codec.dead_code_threshold=0.995",  # unused codes count as dead after one step
    ]
    cfg = debug_config(tiny_shards, tmp_path, "run.max_steps=3", *extra)
    res = train(cfg)
    assert res.steps == 3 and {"mel", "adversarial"} <= set(res.last_losses)
    want = params(read_export(source)[0])
    assert_same(params(read_export(res.export_dir)[0]), want)
    ck2 = cfg.run.run_dir / "checkpoints" / "step_00000002"
    assert_same(params(load_file(str(ck2 / "model.safetensors"))), want)
    set_seed(cfg.run.seed)  # the discriminator a run starts with (build order of step.py)
    build_codec(cfg.codec)
    d0 = build_discriminator(cfg.discriminator, cfg.codec.sample_rate).state_dict()
    d2 = load_file(str(ck2 / "model_1.safetensors"))
    assert any(not torch.equal(d0[k], d2[k]) for k in d0), "discriminator did not train"

    shutil.rmtree(source)
    cfg4 = debug_config(tiny_shards, tmp_path, "run.max_steps=4", *extra)
    res = train(cfg4, resume="auto")
    assert res.steps == 4
    after = params(read_export(res.export_dir)[0])
    assert any(not torch.equal(after[k], want[k]) for k in want), "generator did not train"


def test_mismatched_or_missing_source_is_a_config_error(tiny_shards, tmp_path, source, capsys):
    cfg = debug_config(tiny_shards, tmp_path, f"model.init_from={source}", "codec.n_codebooks=3")
    with pytest.raises(ConfigError, match=r"codec\.n_codebooks.*3.*4"):
        load_init_weights(build_codec(cfg.codec), cfg)
    rc = main(
        [
            "--config",
            "configs/debug.yaml",
            f"data.shards={tiny_shards}",
            f"run.output_dir={tmp_path}",
            f"model.init_from={tmp_path / 'nope'}",
        ]  # fmt: skip
    )
    assert rc == 2
    assert "model.init_from" in capsys.readouterr().err


def test_dac_weights_file_initialises_the_generator(tiny_shards, tmp_path):
    """A DAC-format weights file (legacy weight norm, DAC naming) loads like an export."""
    cfg = debug_config(tiny_shards, tmp_path, f"model.init_from={tmp_path / 'w.pth'}",
                       "codec.n_codebooks=3", "codec.codebook_size=16")  # fmt: skip
    torch.manual_seed(7)
    state = build_codec(cfg.codec).state_dict()
    torch.save({"state_dict": to_dac_state(state), "metadata": {"kwargs": TINY_KWARGS}},
               tmp_path / "w.pth")  # fmt: skip
    codec = build_codec(cfg.codec)
    load_init_weights(codec, cfg)
    assert_same(params(codec.state_dict()), params(state))


def test_disc_warmup_steps_must_not_be_negative(tiny_shards, tmp_path):
    with pytest.raises(ConfigError, match="optim.disc_warmup_steps"):
        debug_config(tiny_shards, tmp_path, "optim.disc_warmup_steps=-1")


def test_finetune_preset_is_dac_16khz_with_explicit_dropout():
    cfg = load_config("configs/telugu16k-finetune.yaml")
    dac16, _ = config_from_dac_kwargs(DAC_RELEASED["16khz"], "DAC 16 kHz")
    assert architecture_mismatch(cfg.codec, dac16) == []
    assert cfg.codec.quantizer_dropout == 0.5  # not the 0.0 the import records
    assert cfg.model.init_from and cfg.optim.disc_warmup_steps > 0
    assert cfg.optim.lr_g < load_config("configs/telugu16k.yaml").optim.lr_g
    # the validations inside the warm-up score the untouched pretrained generator
    assert cfg.validation.every_steps <= cfg.optim.disc_warmup_steps
