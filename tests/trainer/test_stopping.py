"""Stop on request (trainer/stopping.py): a signal or a stop file ends a run at an agreed
step with a checkpoint and an export, and the run resumes from it.

The end-to-end tests start real training processes and signal them the way SLURM does: the
whole process group (trainer, DataLoader worker, and for two processes the launcher too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.trainer._runs import kill_group, logged_steps, start_run, stopped_at, wait_for_step
from trainer.checkpoint import is_complete, step_dir_name
from trainer.config import ConfigError, load_config
from trainer.stopping import StopRequest, parse_signals
from trainer.train import train

REPO = Path(__file__).resolve().parents[2]


# -- the request itself -----------------------------------------------------------------


def test_signal_names_parse_with_or_without_sig_prefix():
    assert parse_signals(["SIGTERM", "usr1"]) == [signal.SIGTERM, signal.SIGUSR1]
    with pytest.raises(ValueError, match="'SIGNOPE'"):
        parse_signals(["SIGNOPE"])


def test_config_refuses_unknown_signals_and_a_zero_agreement_interval():
    with pytest.raises(ConfigError, match="run.stop_signals.*SIGFOO"):
        load_config("configs/debug.yaml", ["run.stop_signals=[SIGTERM, SIGFOO]"])
    with pytest.raises(ConfigError, match="run.agree_every"):
        load_config("configs/debug.yaml", ["run.agree_every=0"])


def test_a_signal_is_recorded_not_obeyed_and_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGUSR1)
    stop = StopRequest(["SIGUSR1"], tmp_path / "STOP").install()
    try:
        assert stop.reason() is None
        os.kill(os.getpid(), signal.SIGUSR1)  # default action would end this process
        os.kill(os.getpid(), signal.SIGUSR1)  # a repeat changes nothing
        assert stop.reason() == "signal SIGUSR1"
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGUSR1) == before


def test_a_stop_file_counts_only_when_touched_after_the_run_began(tmp_path):
    f = tmp_path / "STOP"
    f.touch()
    old = time.time() - 600  # the previous job's file, found by a requeued job
    os.utime(f, (old, old))
    stop = StopRequest([], f)
    assert stop.reason() is None
    f.touch()
    assert stop.reason() == f"stop file {f}"
    stop.consume_file()
    assert not f.exists() and stop.reason() is None


def test_data_workers_ignore_the_stop_signals():
    """The helper the trainer gives DataLoader workers (run in a child, as a worker is)."""
    code = (
        "import os, signal; from trainer.stopping import ignore_signals;"
        "ignore_signals([signal.SIGTERM], 0); os.kill(os.getpid(), signal.SIGTERM); print('alive')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "alive"


# -- real runs ------------------------------------------------------------------------------


def _run_and_ask(cmd: list[str], log: Path, at_step: int, ask, timeout: float = 180) -> int:
    """Start ``cmd``, call ``ask(proc)`` once it has logged ``at_step``, and return its exit
    code (the whole group is killed if it has not ended by ``timeout``)."""
    proc = start_run(cmd, log)
    try:
        wait_for_step(proc, log, at_step)
        ask(proc)
        return proc.wait(timeout=timeout)
    finally:
        kill_group(proc)


def _sigterm_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)


def _launch_2proc(shards: Path, out: Path, *extra: str, config="cpu_2proc.yaml") -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    cmd += ["--config_file", f"launch/{config}", "-m", "trainer.train"]
    return cmd + _args(shards, out, *extra)


def _args(shards: Path, out: Path, *extra: str) -> list[str]:
    # checkpoints and validation far apart: the only checkpoint is the one the stop writes
    return [
        "--config",
        "configs/debug.yaml",
        f"data.shards={shards}",
        f"run.output_dir={out}",
        "run.max_steps=100000",
        "run.log_every=1",
        "validation.every_steps=100000",
        "checkpoint.every_steps=100000",
        "data.num_workers=1",  # a DataLoader worker, which the signal reaches too
        *extra,
    ]


@pytest.mark.slow
def test_sigterm_to_the_job_saves_exports_and_resumes(tiny_shards, tmp_path):
    log = tmp_path / "train.log"
    cmd = [sys.executable, "-m", "trainer.train", *_args(tiny_shards, tmp_path)]
    rc = _run_and_ask(cmd, log, 3, _sigterm_group)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    n = stopped_at(log)
    assert "stop requested (signal SIGTERM)" in text
    run_dir = tmp_path / "debug"
    assert is_complete(run_dir / "checkpoints" / step_dir_name(n))
    assert (run_dir / "export" / "model.safetensors").exists()
    assert "validation" not in text  # the checkpoint was not delayed by a validation

    cfg = load_config(
        "configs/debug.yaml",
        [
            f"data.shards={tiny_shards}",
            f"run.output_dir={tmp_path}",
            f"run.max_steps={n + 2}",
            "run.log_every=1",
        ],
    )
    res = train(cfg, resume="auto")
    assert res.steps == n + 2 and res.stop_reason == "max_steps"
    assert {n + 1, n + 2} <= set(logged_steps(run_dir))


@pytest.mark.slow
@pytest.mark.parametrize("config", ["cpu_2proc.yaml", "cpu_2proc_deepspeed.yaml"])
def test_two_processes_stop_together_on_a_stop_file(tiny_shards, tmp_path, config):
    log = tmp_path / "train.log"
    stop_file = tmp_path / "job.stop"
    extra = ("run.agree_every=4", f"run.stop_file={stop_file}")
    cmd = _launch_2proc(tiny_shards, tmp_path, *extra, config=config)
    rc = _run_and_ask(cmd, log, 2, lambda _proc: stop_file.touch())
    text = log.read_text()
    assert rc == 0, text[-3000:]
    n = stopped_at(log)
    assert n % 4 == 0  # the ranks agree every run.agree_every steps
    assert f"[rank 0] step {n}: stop requested (stop file {stop_file})" in text
    assert f"[rank 1] step {n}: stop requested" in text
    assert is_complete(tmp_path / "debug" / "checkpoints" / step_dir_name(n))
    assert not stop_file.exists()  # consumed: the requeued job will not stop on it


@pytest.mark.slow
def test_sigterm_to_a_two_process_launch_saves_before_the_launcher_kills(tiny_shards, tmp_path):
    """SLURM's time-limit SIGTERM reaches the launcher and both ranks; the launcher forwards
    it and kills the workers 30 s later. The ranks agree, save and export within that."""
    log = tmp_path / "train.log"
    cmd = _launch_2proc(tiny_shards, tmp_path, "run.agree_every=4")
    _run_and_ask(cmd, log, 2, _sigterm_group)  # the launcher exits non-zero: it was signalled
    n = stopped_at(log)
    assert is_complete(tmp_path / "debug" / "checkpoints" / step_dir_name(n))
    assert "generator exported" in log.read_text()
