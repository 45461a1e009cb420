"""Both export paths record the run's ``loss.mel`` in ``codec.json``, so telucodec-eval
measures the mel the model was trained on (configs/debug.yaml sets a non-default one)."""

from __future__ import annotations

from codec.config import MelSpec
from codec.export_format import mel_spec, read_export
from tests.trainer._runs import debug_config
from trainer.export import export_checkpoint
from trainer.train import train


def test_run_export_and_checkpoint_export_carry_the_trained_mel(tiny_shards, tmp_path):
    cfg = debug_config(
        tiny_shards, tmp_path / "out", "run.max_steps=2", "validation.every_steps=100"
    )
    assert cfg.loss.mel != MelSpec()  # else this test could not tell the spec from the default
    res = train(cfg)
    for export_dir in (res.export_dir, export_checkpoint(res.checkpoint, tmp_path / "e")):
        assert mel_spec(read_export(export_dir)[2]) == cfg.loss.mel, export_dir
