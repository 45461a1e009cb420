"""Multi-process training on CPU through ``accelerate launch`` with the configs in launch/:
two-process DDP, two-process DeepSpeed ZeRO-2 (with resume and export), and what a one- and
a two-process run must agree on.

Each run is a real subprocess launch (about 10-20 s on 2 cores). The dead-code threshold is
raised so that dead-code replacement really happens at step 3 (``dead_code_every: 3`` in the
debug preset): the DeepSpeed run only matches the DDP run after it if the replaced codebook
rows reached ZeRO's fp32 master copy.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codec.export_format import load_exported
from tests.trainer._runs import logged_steps

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

LOSSES = ("loss/mel", "loss/adversarial", "loss/feature_matching", "loss/disc", "loss/gen_total")


def _launch(
    config: str | None,
    out: Path,
    *extra: str,
    script: list[str] | None = None,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``accelerate launch [--config_file launch/<config>] -m trainer.train`` on the debug
    preset; ``config=None`` launches one process without a config file; ``script``
    replaces ``-m trainer.train`` (a test wrapper taking the same arguments)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.update(env_extra or {})
    env.pop("WANDB_API_KEY", None)
    if config is None:
        how = ["--num_processes", "1", "--cpu", "--num_machines", "1", "--mixed_precision", "no"]
        how += ["--dynamo_backend", "no"]
    else:
        how = ["--config_file", config if Path(config).is_absolute() else f"launch/{config}"]
    target = script or ["-m", "trainer.train"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *how, *target]
    cmd += ["--config", "configs/debug.yaml", f"run.output_dir={out}", *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _common(shards: Path, steps: int) -> list[str]:
    return [
        f"data.shards={shards}",
        f"run.max_steps={steps}",
        "run.log_every=1",
        "codec.usage_decay=0.5",  # short usage memory + high threshold: most codes are dead
        "codec.dead_code_threshold=0.5",  # at step 3, so dead-code replacement happens
        "data.log_keys=true",
        "wandb.enabled=true",
        "wandb.mode=offline",
    ]


def _keys(run_dir: Path, rank: int) -> list[dict]:
    path = run_dir / f"data_keys_rank{rank}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


def _check_two_process_run(run_dir: Path, proc: subprocess.CompletedProcess, steps: int) -> None:
    """What every two-process run must show (DDP or DeepSpeed)."""
    m = logged_steps(run_dir)
    assert sorted(m) == list(range(1, steps + 1))
    for row in m.values():
        assert all(math.isfinite(row[k]) for k in LOSSES), row
        assert row["progress/world_size"] == 2
        assert row["progress/global_batch"] == 2 * 2  # batch_size 2 per process x 2 processes
        assert row["progress/samples_seen"] == row["step"] * 4
    # both ranks trained on every step, on different data: the (key, offset, epoch) crops
    # are disjoint, and within an epoch so are the chunks (the reader deals whole chunks to
    # ranks, dealt afresh each epoch)
    crops, chunks = [], []
    for rank in (0, 1):
        rows = _keys(run_dir, rank)
        assert [r["step"] for r in rows] == list(range(1, steps + 1))
        assert all(len(r["keys"]) == 2 for r in rows)
        crops.append(
            {c for r in rows for c in zip(r["keys"], r["offsets"], r["epochs"], strict=True)}
        )
        chunks.append({(k, e) for r in rows for k, e in zip(r["keys"], r["epochs"], strict=True)})
    assert len(crops[0]) == len(crops[1]) == 2 * steps  # no crop repeated within a rank
    assert not crops[0] & crops[1]
    assert not chunks[0] & chunks[1]
    # checkpoints written once per saved step; no half-written folder left behind
    ck = run_dir / "checkpoints"
    names = sorted(p.name for p in ck.iterdir() if p.name.startswith("step_"))
    assert names == [f"step_{s:08d}" for s in sorted({3, steps})]
    # one W&B run (offline), and console lines once: only rank 0 logs at INFO
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    out = proc.stdout + proc.stderr
    assert out.count("stopped: max_steps") == 1
    assert f"[rank 0] step {steps} |" in out and "[rank 1] step" not in out
    assert "[rank 0] step 3: re-initialised dead codes" in out


@pytest.fixture(scope="module")
def ddp_run(tiny_shards, tmp_path_factory):
    """Two-process DDP, 6 steps (the reference the DeepSpeed run is compared with)."""
    out = tmp_path_factory.mktemp("ddp")
    proc = _launch("cpu_2proc.yaml", out, *_common(tiny_shards, 6))
    return out / "debug", proc


def test_ddp_two_processes(ddp_run):
    run_dir, proc = ddp_run
    _check_two_process_run(run_dir, proc, 6)
    assert "2 process(es) on cpu" in proc.stdout + proc.stderr


def test_deepspeed_zero2_two_processes_resume_export(tiny_shards, tmp_path, ddp_run):
    """ZeRO-2 (generator in the DeepSpeed engine, discriminator in DDP beside it): 4 steps,
    then resume to 6. The same seed and data give the DDP run's losses at every step, also
    after the dead-code replacement at step 3 and after the resume; export works from the
    live model and from the DeepSpeed checkpoint and gives identical files."""
    ddp_dir, _ = ddp_run
    common = _common(tiny_shards, 4)
    proc = _launch("cpu_2proc_deepspeed.yaml", tmp_path, *common)
    run_dir = tmp_path / "debug"
    out = proc.stdout + proc.stderr
    assert "(deepspeed)" in out
    _check_two_process_run(run_dir, proc, 4)
    assert (run_dir / "checkpoints" / "step_00000004" / "pytorch_model").is_dir()

    resumed = _launch("cpu_2proc_deepspeed.yaml", tmp_path, *_common(tiny_shards, 6), "--resume")
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert "at step 4" in resumed.stdout + resumed.stderr
    m, ref = logged_steps(run_dir), logged_steps(ddp_dir)
    assert sorted(m) == [1, 2, 3, 4, 5, 6]  # continued at step 5, not from 1
    for step in range(1, 7):
        for key in LOSSES:
            assert m[step][key] == pytest.approx(ref[step][key], rel=1e-4), (step, key)
        assert m[step]["lr/generator"] == pytest.approx(ref[step]["lr/generator"], rel=1e-12)
        assert m[step]["progress/samples_seen"] == ref[step]["progress/samples_seen"]
    # the data position continued too: each rank's batches after the resume are the DDP run's
    for rank in (0, 1):
        assert _keys(run_dir, rank) == _keys(ddp_dir, rank)

    ck = run_dir / "checkpoints" / "step_00000006"
    exp = tmp_path / "exp"
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.export", "--checkpoint", str(ck), "--out", str(exp)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (exp / "model.safetensors").read_bytes() == (
        run_dir / "export" / "model.safetensors"
    ).read_bytes()
    codec, meta = load_exported(exp)
    assert meta["step"] == 6
    # same weights as the DDP run's export (same format; values equal within float noise)
    ddp_codec, _ = load_exported(ddp_dir / "export")
    sd, ref_sd = codec.state_dict(), ddp_codec.state_dict()
    assert set(sd) == set(ref_sd)
    for k in sd:
        assert (sd[k] - ref_sd[k]).abs().max().item() < 1e-4, k


def test_one_vs_two_processes_agree(tiny_shards, tmp_path, ddp_run):
    """Same seed and config, one process vs two: the global batch is batch_size x processes,
    the step count and LR schedule are identical step by step, samples_seen scales with the
    world size, and rank 0 of two processes reads a subset of what one process reads."""
    ddp_dir, _ = ddp_run
    _launch(None, tmp_path, *_common(tiny_shards, 6))
    one, two = logged_steps(tmp_path / "debug"), logged_steps(ddp_dir)
    assert sorted(one) == sorted(two) == list(range(1, 7))
    for step in one:
        assert one[step]["progress/world_size"] == 1 and two[step]["progress/world_size"] == 2
        assert one[step]["progress/global_batch"] == 2
        assert two[step]["progress/global_batch"] == 2 * one[step]["progress/global_batch"]
        assert one[step]["progress/samples_seen"] == 2 * step
        assert two[step]["progress/samples_seen"] == 2 * one[step]["progress/samples_seen"]
        for key in ("lr/generator", "lr/discriminator"):
            assert one[step][key] == two[step][key]  # LR used as given, one decay per step
    assert one[6]["lr/generator"] == pytest.approx(1e-4 * 0.999996**6, rel=1e-12)
    # the two ranks together cover the train split's 8 chunks; one process reads from the same set
    single = {k for r in _keys(tmp_path / "debug", 0) for k in r["keys"]}
    both = [{k for r in _keys(ddp_dir, rank) for k in r["keys"]} for rank in (0, 1)]
    assert len(both[0] | both[1]) == 8 and single <= both[0] | both[1]


def test_deepspeed_skips_nonfinite_step_on_every_rank(tiny_shards, tmp_path):
    """NaN in rank 0's third batch only, under ZeRO-2: the gradient all-reduce spreads it, so
    both ranks' engines must skip step 3 (DeepSpeed's own check of the global norm); the
    guard counts it, raises its alarm, and the run goes on with finite weights."""
    proc = _launch(
        "cpu_2proc_deepspeed.yaml",
        tmp_path,
        *_common(tiny_shards, 4),
        script=["tests/trainer/_poisoned_train.py"],
        env_extra={"POISON_RANK": "0", "POISON_BATCHES": "3"},
    )
    run_dir = tmp_path / "debug"
    m = logged_steps(run_dir)
    assert sorted(m) == [1, 2, 3, 4]
    assert [m[s]["guard/nonfinite_steps"] for s in (1, 2, 3, 4)] == [0, 0, 1, 1]
    assert math.isfinite(m[4]["loss/gen_total"]) and math.isfinite(m[4]["loss/disc"])
    alarms = [json.loads(x) for x in (run_dir / "alarms.jsonl").read_text().splitlines()]
    assert [(a["kind"], a["step"]) for a in alarms if a["kind"] == "nonfinite"] == [
        ("nonfinite", 3)
    ]
    assert "stopped: max_steps" in proc.stdout + proc.stderr
    codec, meta = load_exported(run_dir / "export")
    assert meta["step"] == 4
    assert all(bool(p.isfinite().all()) for p in codec.parameters())


@pytest.mark.parametrize("poison", [False, True], ids=["clean", "nan_at_step_3"])
def test_deepspeed_zero0_trains_like_ddp_and_skips_a_nonfinite_step(
    tiny_shards, tmp_path, ddp_run, poison
):
    """ZeRO stage 0 (no ZeRO optimizer, so DeepSpeed neither checks nor reports the gradient
    norm): the trainer takes the norm itself. Clean, it trains as DDP does (same losses and
    norms); with NaN in rank 0's third batch, both ranks skip step 3 and go on."""
    ds = json.loads((REPO / "launch/deepspeed/zero2.json").read_text())
    ds["zero_optimization"] = {"stage": 0}
    (tmp_path / "zero0.json").write_text(json.dumps(ds))
    yaml = (REPO / "launch/cpu_2proc_deepspeed.yaml").read_text()
    yaml = yaml.replace("launch/deepspeed/zero2.json", str(tmp_path / "zero0.json"))
    (tmp_path / "zero0.yaml").write_text(yaml)
    extra = {"POISON_RANK": "0", "POISON_BATCHES": "3"} if poison else {}
    script = ["tests/trainer/_poisoned_train.py"] if poison else None
    proc = _launch(str(tmp_path / "zero0.yaml"), tmp_path, *_common(tiny_shards, 4),
                   script=script, env_extra=extra)  # fmt: skip
    assert "(deepspeed)" in proc.stdout + proc.stderr
    m = logged_steps(tmp_path / "debug")
    assert sorted(m) == [1, 2, 3, 4]
    if poison:
        assert [m[s]["guard/nonfinite_steps"] for s in (1, 2, 3, 4)] == [0, 0, 1, 1]
        assert math.isfinite(m[4]["loss/gen_total"])
        return
    ref = logged_steps(ddp_run[0])
    for step in (1, 2, 3, 4):
        for key in (*LOSSES, "grad_norm/generator"):
            assert m[step][key] == pytest.approx(ref[step][key], rel=1e-4), (step, key)
