"""Two nodes on one machine, through each multi-node launch path a user has: the same launch
run twice with ``--num_machines 2 --machine_rank 0|1 --main_process_ip 127.0.0.1``, one CPU
process per node.

Each path must form one world of 2 whose ranks read disjoint data and whose losses equal
the one-node two-process run at every step; a stop file stops both nodes at the same step
with a checkpoint; and ``--resume`` on both nodes continues from it with the same losses
the uninterrupted one-node run had.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from tests.trainer._runs import (
    kill_group,
    logged_steps,
    start_run,
    stopped_at,
    wait_for_step,
)
from trainer.checkpoint import is_complete, step_dir_name

pytestmark = pytest.mark.slow

LOSSES = ("loss/mel", "loss/adversarial", "loss/feature_matching", "loss/disc", "loss/gen_total")
REF_STEPS = 16
VENV_BIN = str(Path(sys.executable).parent)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(shards: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.shards={shards}",
        f"run.output_dir={out}",
        "run.log_every=1",
        "run.agree_every=2",
        "validation.every_steps=100000",
        "checkpoint.every_steps=100000",
        "data.log_keys=true",
        "codec.usage_decay=0.5",  # dead codes at step 3: the codebook sync across nodes runs
        "codec.dead_code_threshold=0.5",
        *extra,
    ]


def _accelerate(config: str, rank: int, port: int, args: list[str]) -> tuple[list[str], dict]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"launch/{config}"]
    cmd += ["--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank)]
    cmd += ["--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
    return [*cmd, "-m", "trainer.train", "--config", "configs/debug.yaml", *args], {}


def _torchrun_script(launcher: str):
    def make(_config: str, rank: int, port: int, args: list[str]) -> tuple[list[str], dict]:
        env = {
            "LAUNCHER": launcher,
            "NODE_RANK": str(rank),
            "NNODES": "2",
            "GPUS_PER_NODE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            # the script calls `accelerate` / `torchrun` by name, as a user's shell would
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        }
        # the script always adds --resume (a restarted job continues); fresh here too
        args = [a for a in args if a != "--resume"]
        return ["bash", "launch/torchrun_multinode.sh", "configs/debug.yaml", *args], env

    return make


PATHS = {
    "multi_node.yaml": ("multi_node.yaml", _accelerate),
    "deepspeed_zero2.yaml": ("deepspeed_zero2.yaml", _accelerate),
    "torchrun_multinode.sh(accelerate)": ("", _torchrun_script("accelerate")),
    "torchrun_multinode.sh(torchrun)": ("", _torchrun_script("torchrun")),
}


def _two_nodes(path: str, args: list[str], logs: list[Path], stop_file: Path | None = None):
    """Start both nodes; with ``stop_file``, touch it once node 0 has logged step 2. Returns
    both exit codes."""
    config, make = PATHS[path]
    port = _free_port()
    procs = []
    try:
        for rank in (0, 1):
            cmd, env = make(config, rank, port, args)
            procs.append(start_run(cmd, logs[rank], env))
        if stop_file is not None:
            wait_for_step(procs[0], logs[0], 2)
            stop_file.touch()
        return [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            kill_group(p)


def _keys(run_dir: Path, rank: int) -> dict[int, list]:
    rows = [
        json.loads(x) for x in (run_dir / f"data_keys_rank{rank}.jsonl").read_text().splitlines()
    ]
    return {r["step"]: list(zip(r["keys"], r["offsets"], r["epochs"], strict=True)) for r in rows}


@pytest.fixture(scope="module")
def one_node(tiny_shards, tmp_path_factory) -> Path:
    """The reference: one node, two processes (launch/cpu_2proc.yaml), REF_STEPS steps."""
    out = tmp_path_factory.mktemp("one_node")
    log = out / "train.log"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    cmd += ["launch/cpu_2proc.yaml", "-m", "trainer.train", "--config", "configs/debug.yaml"]
    cmd += _train_args(tiny_shards, out, f"run.max_steps={REF_STEPS}")
    proc = start_run(cmd, log)
    try:
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        kill_group(proc)
    return out / "debug"


@pytest.mark.parametrize("path", list(PATHS))
def test_two_nodes_one_world_stop_and_resume(path, tiny_shards, tmp_path, one_node):
    stop_file = tmp_path / "job.stop"
    args = _train_args(tiny_shards, tmp_path, "run.max_steps=100000", f"run.stop_file={stop_file}")
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    rcs = _two_nodes(path, args, logs, stop_file)
    text = [p.read_text() for p in logs]
    assert rcs == [0, 0], f"{rcs}\n{text[0][-3000:]}\n{text[1][-3000:]}"
    assert "2 process(es) on cpu" in text[0]
    if "deepspeed" in path:
        assert "(deepspeed)" in text[0]

    # both nodes stopped at the same agreed step, with one checkpoint
    n = stopped_at(*logs)
    assert f"[rank 0] step {n}: stop requested" in text[0]
    assert f"[rank 1] step {n}: stop requested" in text[1]
    assert n % 2 == 0 and n + 2 <= REF_STEPS
    run_dir = tmp_path / "debug"
    assert is_complete(run_dir / "checkpoints" / step_dir_name(n))

    # --resume on both nodes continues at n + 1
    resume_logs = [tmp_path / "resume0.log", tmp_path / "resume1.log"]
    resume_args = [*args[:-2], f"run.max_steps={n + 2}", "--resume"]
    rcs = _two_nodes(path, resume_args, resume_logs)
    assert rcs == [0, 0], resume_logs[0].read_text()[-3000:] + resume_logs[1].read_text()[-3000:]
    assert f"at step {n}" in resume_logs[0].read_text()

    # one world of 2 at every step, losses equal to the one-node run, before and after resume
    m, ref = logged_steps(run_dir), logged_steps(one_node)
    assert sorted(m) == list(range(1, n + 3))
    for step, row in m.items():
        assert row["progress/world_size"] == 2 and row["progress/global_batch"] == 4
        for key in LOSSES:
            assert row[key] == pytest.approx(ref[step][key], rel=1e-4), (path, step, key)
    # each node's rank read exactly what that rank read on one node: disjoint across ranks
    keys = [_keys(run_dir, r) for r in (0, 1)]
    ref_keys = [_keys(one_node, r) for r in (0, 1)]
    for rank in (0, 1):
        assert sorted(keys[rank]) == list(range(1, n + 3))
        for step, crops in keys[rank].items():
            assert crops == ref_keys[rank][step], (rank, step)
    assert not {c for v in keys[0].values() for c in v} & {c for v in keys[1].values() for c in v}
