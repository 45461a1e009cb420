"""The commands a user types, as subprocesses: telucodec-prep, accelerate launch of the
trainer (debug preset), --resume, and export of a checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shards import synth

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    return proc


def test_prep_train_resume_export_commands(tmp_path):
    corpus = tmp_path / "corpus"
    for i, rate in enumerate((16_000, 44_100, 48_000)):
        synth.write(corpus / f"SPKF0{i}.wav", synth.speech_like(10.0, rate, seed=i), rate, "PCM_16")
    shards = tmp_path / "shards"
    py = sys.executable
    _run(
        py,
        "-m",
        "shards.cli",
        str(corpus),
        "--out",
        str(shards),
        "--split",
        "time",
        "--val-seconds",
        "3",
        "--gap-seconds",
        "0.5",
        "--chunk-seconds",
        "4",
    )
    common = [
        "--config",
        "configs/debug.yaml",
        f"data.shards={shards}",
        f"run.output_dir={tmp_path}",
    ]
    launch = [
        py,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--cpu",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "trainer.train",
    ]
    _run(*launch, *common, "run.max_steps=3")
    ck = tmp_path / "debug" / "checkpoints"
    assert (ck / "latest").read_text() == "step_00000003"
    _run(*launch, *common, "run.max_steps=6", "--resume")
    assert (ck / "latest").read_text() == "step_00000006"
    rows = [json.loads(x) for x in (tmp_path / "debug" / "metrics.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows if "loss/mel" in r}) == [2, 3, 4, 6]
    _run(
        py,
        "-m",
        "trainer.export",
        "--checkpoint",
        str(ck / "step_00000006"),
        "--out",
        str(tmp_path / "exp"),
    )
    meta = json.loads((tmp_path / "exp" / "codec.json").read_text())
    assert meta["step"] == 6 and meta["loudness_target_lufs"] == -26.0
