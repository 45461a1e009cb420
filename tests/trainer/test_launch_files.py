"""The files in launch/ are what users launch with: each Accelerate config must load in
Accelerate, reference DeepSpeed JSON that exists and that the trainer accepts, and the SLURM
script must expand each node's rank on that node and turn SLURM's early warning into a
saved, stopped and requeued run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from trainer.checkpoint import is_complete

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
CONFIGS = sorted(LAUNCH.glob("*.yaml"))


def test_expected_launch_files_exist():
    names = {p.name for p in LAUNCH.iterdir()}
    assert {
        "single_gpu.yaml",
        "multi_gpu.yaml",
        "multi_node.yaml",
        "deepspeed_zero1.yaml",
        "deepspeed_zero2.yaml",
        "cpu_2proc.yaml",
        "cpu_2proc_deepspeed.yaml",
        "slurm_multinode.sbatch",
        "torchrun_multinode.sh",
        "README.md",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    cfg = load_config_from_file(str(path))
    assert cfg.num_processes >= 1 and cfg.num_machines >= 1
    if cfg.distributed_type.value == "DEEPSPEED":
        ds_file = REPO / cfg.deepspeed_config["deepspeed_config_file"]
        ds = json.loads(ds_file.read_text())
        # the trainer owns these values and runs autocast itself (trainer/engine.py)
        assert ds["zero_optimization"]["stage"] in (1, 2)
        assert ds["bf16"]["enabled"] is False and ds["fp16"]["enabled"] is False
        for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
            assert ds[key] == "auto"
        assert ds["gradient_clipping"] == "auto"
        assert cfg.deepspeed_config.get("zero3_init_flag") is False
        # torchrun per node: the default (pdsh) ssh-es into a hostfile's hosts, and without
        # one a two-node launch split into two worlds of 1
        assert cfg.deepspeed_config.get("deepspeed_multinode_launcher") == "standard"


def test_cpu_configs_start_two_processes():
    """accelerate starts several CPU processes only through its multi-GPU (torchrun) launcher
    with use_cpu; a MULTI_CPU config would start one process."""
    cfg = load_config_from_file(str(LAUNCH / "cpu_2proc.yaml"))
    assert cfg.distributed_type.value == "MULTI_GPU" and cfg.use_cpu and cfg.num_processes == 2


def test_slurm_script_expands_rank_on_each_node():
    text = (LAUNCH / "slurm_multinode.sbatch").read_text()
    subprocess.run(["bash", "-n", str(LAUNCH / "slurm_multinode.sbatch")], check=True)
    # the srun payload is single-quoted, and that is where SLURM_NODEID is read
    m = re.search(r"srun [^\n]*bash -c '\n(.*?)\n'", text, re.S)
    assert m, "srun ... bash -c '<payload>' not found"
    payload = m.group(1)
    assert '--machine_rank "$SLURM_NODEID"' in payload
    assert "SLURM_NODEID" not in text.replace(payload, "").split("#SBATCH")[-1].replace(
        "$SLURM_NODEID is expanded", ""
    )
    assert '--main_process_ip "$MASTER_ADDR"' in payload
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1' in text
    # what the payload needs from the batch host is exported
    for var in ("ACCEL_CONFIG", "NNODES", "GPUS_PER_NODE", "MASTER_ADDR", "MASTER_PORT"):
        assert re.search(rf"^export {var}=", text, re.M), var


def _fake_slurm(bin_dir: Path, calls: Path) -> None:
    """``srun``, ``scontrol`` and ``accelerate`` stand-ins: srun runs its command here,
    scontrol names one host and records requeues, and ``accelerate launch ... -m
    trainer.train ARGS`` runs the real trainer in one process."""
    scripts = {
        "srun": 'while [[ "$1" == --* ]]; do shift; done; exec "$@"',
        "scontrol": (f'if [ "$1" = show ]; then echo node0; else echo "$*" >> {calls}; fi'),
        "accelerate": (
            'while [ "$1" != -m ]; do shift; done; shift 2; '
            f'exec {sys.executable} -m trainer.train "$@"'
        ),
    }
    bin_dir.mkdir()
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)


@pytest.mark.slow
def test_slurm_script_saves_stops_and_requeues_on_its_early_warning(tiny_shards, tmp_path):
    """SLURM's ``--signal=B:USR1`` reaches the batch shell only: its trap touches the stop
    file, the (real) trainer saves and exits 0, and the script requeues the job."""
    calls = tmp_path / "scontrol_calls"
    _fake_slurm(tmp_path / "bin", calls)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "SLURM_JOB_ID": "4242",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_JOB_NODELIST": "node0",
    }
    overrides = [
        f"data.shards={tiny_shards}",
        f"run.output_dir={tmp_path}",
        "run.max_steps=100000",
        "run.log_every=1",
        "validation.every_steps=100000",
        "checkpoint.every_steps=100000",
    ]
    (tmp_path / "configs").symlink_to(REPO / "configs")  # the script runs in the job's folder
    log = tmp_path / "job.out"
    cmd = ["bash", str(LAUNCH / "slurm_multinode.sbatch"), "configs/debug.yaml", *overrides]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        t0 = time.time()
        while "] step 3 |" not in log.read_text():
            assert proc.poll() is None and time.time() - t0 < 300, log.read_text()[-3000:]
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGUSR1)  # what --signal=B:USR1@300 does
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "stop requested (stop file" in text
    assert calls.read_text().split() == ["requeue", "4242"]
    ckpts = [p for p in (tmp_path / "debug" / "checkpoints").glob("step_*") if is_complete(p)]
    assert len(ckpts) == 1
    assert (tmp_path / "logs").is_dir() and not (tmp_path / "logs" / "4242.stop").exists()
