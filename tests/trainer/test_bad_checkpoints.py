"""Checkpoints never run code, and every user or environment fault of training and export
is one line and exit 2 while a bug keeps its traceback (issue 14, items 2 and 13)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import torch
from accelerate import Accelerator

from tests.trainer._runs import debug_config
from trainer import export
from trainer.checkpoint import CheckpointError, safe_torch_load
from trainer.train import main, train


class Payload:
    """Unpickling this creates ``path``: the stand-in for a malicious checkpoint file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_payload(file, marker) -> None:
    torch.save({"state": Payload(marker)}, file)


@pytest.fixture(scope="module")
def run(tiny_shards, tmp_path_factory):
    """A two-step debug run: its config and checkpoint folder (read-only for the tests)."""
    out = tmp_path_factory.mktemp("run")
    cfg = debug_config(tiny_shards, out, "run.max_steps=2")
    res = train(cfg)
    return cfg, res.checkpoint


@pytest.fixture
def ck(run, tmp_path):
    """A copy of the run's checkpoint to tamper with."""
    dst = tmp_path / "step_00000002"
    shutil.copytree(run[1], dst)
    return dst


def train_cli(run, tmp_path, *extra: str) -> int:
    cfg = run[0]
    return main(
        [
            "--config",
            "configs/debug.yaml",
            f"data.shards={cfg.data.shards}",
            f"run.output_dir={tmp_path / 'out'}",
            "run.max_steps=3",
            *extra,
        ]
    )


def error_line(capsys, prog: str) -> str:
    """The command's one error line (logging may print before it); no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith(f"{prog}: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_the_payload_is_live(tmp_path):
    """The test's stand-in really runs code when a loader lets it (so the tests below can
    fail)."""
    f, marker = tmp_path / "evil.bin", tmp_path / "ran"
    write_payload(f, marker)
    torch.load(f, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("name", ["random_states_0.pkl", "optimizer.bin", "scheduler_1.bin"])
def test_resume_refuses_a_file_that_would_run_code(run, ck, tmp_path, capsys, name):
    marker = tmp_path / "ran"
    assert (ck / name).exists()
    write_payload(ck / name, marker)
    assert train_cli(run, tmp_path, "--resume", str(ck)) == 2
    line = error_line(capsys, "telucodec-train")
    assert str(ck / name) in line and "refused" in line and "run code" in line
    assert not marker.exists()


def test_a_pickled_loop_state_is_never_loaded(run, ck, tmp_path, capsys):
    marker = tmp_path / "ran"
    (ck / "train_state.json").unlink()
    write_payload(ck / "custom_checkpoint_0.pkl", marker)
    assert train_cli(run, tmp_path, "--resume", str(ck)) == 2
    assert "train_state.json" in error_line(capsys, "telucodec-train")
    assert not marker.exists()


def test_loop_state_is_json_and_round_trips(run, ck):
    state = json.loads((ck / "train_state.json").read_text())
    assert state["step"] == 2 and state["data_batches"] == 2
    assert not list(ck.glob("custom_checkpoint_*.pkl"))  # nothing of ours is pickled
    (ck / "train_state.json").write_text('{"step": "two"}')
    acc = Accelerator(cpu=True)
    from trainer.checkpoint import CheckpointManager

    with pytest.raises(CheckpointError, match="train_state.json: field 'step'"):
        CheckpointManager(acc, ck.parent, 2).load(ck)


def test_export_of_a_deepspeed_checkpoint_reads_weights_only(ck, tmp_path, capsys):
    weights = export.load_file(str(ck / "model.safetensors"))
    (ck / "model.safetensors").unlink()
    ds = ck / "pytorch_model"
    ds.mkdir()
    # what DeepSpeed stores beside the weights: plain data, accepted
    torch.save({"module": weights, "ds_version": "0.19", "global_steps": 2}, ds / "x.pt")
    os.replace(ds / "x.pt", ds / "mp_rank_00_model_states.pt")
    assert export.main(["--checkpoint", str(ck), "--out", str(tmp_path / "e1")]) == 0
    assert (tmp_path / "e1" / "model.safetensors").exists()
    # and one that would run code is refused
    marker = tmp_path / "ran"
    torch.save({"module": weights, "config": Payload(marker)}, ds / "mp_rank_00_model_states.pt")
    assert export.main(["--checkpoint", str(ck), "--out", str(tmp_path / "e2")]) == 2
    line = error_line(capsys, "telucodec-export")
    assert str(ds / "mp_rank_00_model_states.pt") in line and "refused" in line
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        safe_torch_load(ds / "mp_rank_00_model_states.pt")
    assert not marker.exists()


def test_an_architecture_change_on_resume_is_named(run, ck, tmp_path, capsys):
    assert train_cli(run, tmp_path, "--resume", str(ck), "codec.decoder_dim=16") == 2
    line = error_line(capsys, "telucodec-train")
    want = f"the checkpoint's codec.decoder_dim is {run[0].codec.decoder_dim}, the config says 16"
    assert want in line and str(ck) in line


@pytest.mark.parametrize("garbage", [b"\x00\xffgarbage", b'{"no": "step"}', b""])
def test_a_garbage_complete_marker_is_named(run, ck, tmp_path, capsys, garbage):
    (ck / "COMPLETE").write_bytes(garbage)
    assert train_cli(run, tmp_path, "--resume", str(ck)) == 2
    assert str(ck / "COMPLETE") in error_line(capsys, "telucodec-train")
    assert export.main(["--checkpoint", str(ck), "--out", str(tmp_path / "e")]) == 2
    assert str(ck / "COMPLETE") in error_line(capsys, "telucodec-export")


def test_a_missing_checkpoint_is_named(run, tmp_path, capsys):
    assert train_cli(run, tmp_path, "--resume", str(tmp_path / "nope")) == 2
    assert "nope: not a complete checkpoint" in error_line(capsys, "telucodec-train")


def test_a_full_disk_on_checkpoint_save_names_the_folder(run, tmp_path, capsys, monkeypatch):
    def full(self, output_dir=None, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{output_dir}/optimizer.bin")

    monkeypatch.setattr(Accelerator, "save_state", full)
    assert train_cli(run, tmp_path, "run.max_steps=2") == 2
    line = error_line(capsys, "telucodec-train")
    partial = tmp_path / "out" / "debug" / "checkpoints" / "step_00000002.partial"
    assert f"{partial}/optimizer.bin: saving the checkpoint failed: No space left" in line
    assert not partial.exists()  # the unfinished save gave its space back


def test_torch_short_write_is_an_environment_fault(run, tmp_path, capsys, monkeypatch):
    def short(self, output_dir=None, **kw):  # what torch.save says when the disk fills
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(Accelerator, "save_state", short)
    assert train_cli(run, tmp_path, "run.max_steps=2") == 2
    line = error_line(capsys, "telucodec-train")
    assert "step_00000002.partial: saving the checkpoint failed" in line and "disk full" in line


def test_a_bug_keeps_its_traceback(run, tmp_path, monkeypatch):
    def oom(*a, **k):
        raise RuntimeError("CUDA out of memory (a stand-in)")

    monkeypatch.setattr("trainer.train.gan_step", oom)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        train_cli(run, tmp_path, "run.max_steps=1")


@pytest.mark.parametrize("prog", ["telucodec-train", "telucodec-preflight"])
def test_broken_yaml_names_file_and_line(tmp_path, capsys, prog):
    from trainer import preflight

    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  name: x\n  max_steps: [1, 2\ndata: {}\n")
    cli = main if prog == "telucodec-train" else preflight.main
    assert cli(["--config", str(bad)]) == 2
    line = error_line(capsys, prog)
    assert str(bad) in line and "line 4" in line and "not valid YAML" in line


def test_export_refuses_nan_weights_in_a_checkpoint(ck, tmp_path, capsys):
    weights = export.load_file(str(ck / "model.safetensors"))
    key = sorted(weights)[0]
    weights[key] = weights[key].clone()
    weights[key].view(-1)[0] = float("inf")
    from safetensors.torch import save_file

    save_file(weights, str(ck / "model.safetensors"))
    assert export.main(["--checkpoint", str(ck), "--out", str(tmp_path / "e")]) == 2
    line = error_line(capsys, "telucodec-export")
    assert f"{ck}: tensor {key} holds 1 NaN/Inf values" in line
    assert not (tmp_path / "e").exists()


def test_read_only_export_out_is_named(ck, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(export.Path, "write_bytes", read_only)
    assert export.main(["--checkpoint", str(ck), "--out", str(out)]) == 2
    line = error_line(capsys, "telucodec-export")
    assert str(out / "model.safetensors.tmp") in line and "Read-only file system" in line
