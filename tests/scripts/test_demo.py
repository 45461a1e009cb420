"""`make demo`'s job, shrunk to the debug preset: generated corpus -> prep -> train ->
validate -> export, with the summary a user reads at the end."""

from __future__ import annotations

from scripts.demo import run_demo


def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_demo(out, minutes=0.05, data=None, preset="configs/debug.yaml") == 0
    text = capsys.readouterr().out
    assert "rejected" in text and "SPKM08_corrupt.wav" in text  # the corrupt file is named
    assert "validation:" in text and "verdict" in text
    assert (out / "shards" / "manifest.json").exists()
    assert (out / "shards" / "report.md").exists()
    assert (out / "debug" / "export" / "model.safetensors").exists()
    assert (out / "debug" / "checkpoints" / "latest").exists()
