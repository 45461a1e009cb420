"""The files in launch/ are what users launch with: each Accelerate config must load in
Accelerate, reference DeepSpeed JSON that exists and that the trainer accepts, and the SLURM
script must expand each node's rank on that node."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

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
