"""launch/slurm_multinode.sbatch on a real SLURM: Debian's slurmctld, two slurmd (nodes n1
and n2, both on this host) and munge, started by scripts/slurm-localhost.sh.

One job on two nodes trains the debug preset through launch/multi_node.yaml (CPU). Its
time limit is then cut short, so SLURM's own ``--signal=B:USR1@300`` warning reaches the
batch shell: the run saves, the script requeues the job, the requeued job resumes from that
checkpoint, and a stop file ends it with exit 0. No step is lost or repeated.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.trainer._runs import logged_steps
from trainer.checkpoint import is_complete, step_dir_name

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-host, two-node SLURM; yields the environment that reaches it."""
    if shutil.which("slurmctld") is None:
        if os.environ.get("CI"):
            pytest.fail("slurmctld missing: scripts/system-deps.sh installs slurm-wlm")
        pytest.skip("slurm-wlm is not installed (scripts/system-deps.sh installs it)")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_TEST_DIR": str(state)}
    script = str(REPO / "scripts" / "slurm-localhost.sh")
    out = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    env["SLURM_CONF"] = str(state / "slurm.conf")
    yield env
    subprocess.run(["bash", script, "stop"], env=env, check=False)


def _scontrol(env: dict, *args: str) -> str:
    return subprocess.run(
        ["scontrol", *args], env=env, capture_output=True, text=True, check=True, timeout=30
    ).stdout


def _wait_for(pattern: str, log: Path, env: dict, job: str, timeout: float = 240) -> re.Match:
    t0 = time.time()
    while time.time() - t0 < timeout:
        text = log.read_text() if log.exists() else ""
        m = re.search(pattern, text)
        if m:
            return m
        time.sleep(1)
    state = _scontrol(env, "show", "job", job)
    raise AssertionError(f"no {pattern!r} in {timeout} s\n{state}\n{text[-4000:]}")


def test_two_node_job_warns_saves_requeues_resumes(slurm, tiny_shards, tmp_path):
    name = f"tc-test-{uuid.uuid4().hex[:8]}"
    stop_file = tmp_path / "job.stop"
    env = {
        **slurm,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "GPUS_PER_NODE": "1",  # one CPU process per node
        "STOP_FILE": str(stop_file),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
    }
    shard_base = f"pipe:cat {tiny_shards}/{{name}}"  # one argument with spaces: must arrive whole
    cpus = str(os.cpu_count())
    cmd = ["sbatch", "--parsable", f"--job-name={name}", "--nodes=2", "--gpus-per-node=0"]
    cmd += [f"--cpus-per-task={cpus}", "--time=30", "launch/slurm_multinode.sbatch"]
    cmd += ["configs/debug.yaml", f"data.shard_base={shard_base}", f"data.shards={tiny_shards}"]
    cmd += [f"run.output_dir={tmp_path}", "run.max_steps=100000", "run.log_every=1"]
    cmd += ["run.agree_every=2", "validation.every_steps=100000", "checkpoint.every_steps=100000"]
    job = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    job_id = job.stdout.strip().split(";")[0]
    log = REPO / "logs" / f"{name}-{job_id}.out"
    try:
        _wait_for(r"\] step 3 \|", log, env, job_id)
        text = log.read_text()
        assert "2 process(es) on cpu" in text
        for node in (0, 1):  # srun gave each launcher the job's CPUs
            assert f"node {node}: " in text and f"SLURM_CPUS_PER_TASK={cpus}" in text
        assert f"master: 127.0.0.1:{20000 + int(job_id) % 20000}" in text

        # a short time limit: SLURM's early warning (B:USR1@300) fires within its 30 s tick
        _scontrol(env, "update", f"JobId={job_id}", "TimeLimit=5")
        _wait_for(rf"requeueing job {job_id}", log, env, job_id, timeout=180)
        _scontrol(env, "update", f"JobId={job_id}", "TimeLimit=30")  # the rerun is not warned
        text = log.read_text()
        assert "SIGUSR1: time limit near" in text
        first = {int(s) for s in re.findall(r"step (\d+): stop requested", text)}
        assert len(first) == 1, text[-3000:]  # both ranks, one agreed step
        n = first.pop()
        assert is_complete(tmp_path / "debug" / "checkpoints" / step_dir_name(n))

        _wait_for(rf"resumed from \S+ at step {n}", log, env, job_id)
        _wait_for(rf"\] step {n + 2} \|", log, env, job_id)
        stop_file.touch()  # what an operator does to end a run cleanly
        t0 = time.time()
        while "JobState=COMPLETED" not in (state := _scontrol(env, "show", "job", job_id)):
            assert "FAILED" not in state and time.time() - t0 < 180, state + log.read_text()
            time.sleep(1)
        assert "ExitCode=0:0" in state and "Restarts=1" in state
    finally:
        subprocess.run(["scancel", job_id], env=env, check=False)

    text = log.read_text()
    assert f"job {job_id} (restart 1)" in text
    last = {int(s) for s in re.findall(r"step (\d+): stop requested", text)} - {n}
    assert len(last) == 1
    end = last.pop()
    # every step exactly once across the two sessions, each logged by rank 0
    steps = logged_steps(tmp_path / "debug")
    assert sorted(steps) == list(range(1, end + 1))
    assert all(row["progress/world_size"] == 2 for row in steps.values())
    saved = yaml.safe_load((tmp_path / "debug" / "config.yaml").read_text())
    assert saved["data"]["shard_base"] == shard_base
    log.unlink()
