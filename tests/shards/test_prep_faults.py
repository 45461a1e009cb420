"""Prep under faults that are not the input's: a full disk, a read-only folder, a kill.

An environment failure stops the run (non-zero exit, no manifest, one line naming the path)
instead of marking good recordings as rejected; a killed prep takes its workers with it.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from shards import cli, synth
from shards.prep import PrepConfig, prep_corpus
from shards.writer import _HashingFile
from telucodec.errors import EnvironmentFault

ROOT = Path(__file__).resolve().parents[2]


def _corpus(folder: Path, n: int = 3, seconds: float = 12.0) -> Path:
    for i in range(n):
        synth.write(
            folder / f"r{i}.wav", synth.speech_like(seconds, 16_000, seed=i), 16_000, "PCM_16"
        )
    return folder


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_writing_a_spool_stops_the_run_without_a_manifest(tmp_path, monkeypatch):
    src = _corpus(tmp_path / "in")
    monkeypatch.setattr(pickle, "dump", _no_space)  # the worker's spool write
    out = tmp_path / "out"
    with pytest.raises(EnvironmentFault, match=r"\.spool: writing the spool file failed: No sp"):
        prep_corpus(src, out, PrepConfig(workers=1), progress=False)
    assert not (out / "manifest.json").exists()
    assert not (out / "report.json").exists()  # a report would call good audio rejected
    assert not list(out.glob("*.tar")) and not (out / ".spool").exists()


def test_full_disk_writing_a_shard_stops_the_run(tmp_path, monkeypatch):
    src = _corpus(tmp_path / "in")
    monkeypatch.setattr(_HashingFile, "write", _no_space)
    out = tmp_path / "out"
    with pytest.raises(EnvironmentFault) as info:
        prep_corpus(src, out, PrepConfig(workers=1), progress=False)
    assert info.value.path in {str(out / f".{s}-000000.tar.tmp") for s in ("train", "val")}
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in out.iterdir()) == []  # the half shard was deleted too


def test_full_disk_in_a_pool_worker_exits_2_with_one_line(tmp_path):
    """The real pool: the worker processes get a pickle.dump that finds the disk full
    (through a sitecustomize every Python process of the run imports)."""
    src = _corpus(tmp_path / "in", n=4, seconds=4.0)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import errno, os, pickle
            _dump = pickle.dump
            def dump(obj, f, *a, **k):
                if str(getattr(f, "name", "")).endswith(".spool"):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return _dump(obj, f, *a, **k)
            pickle.dump = dump
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"}
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shards.cli",
            str(src),
            "--out",
            str(out),
            "--workers",
            "2",
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"telucodec-prep: error: {out / '.spool'}/")
    assert "No space left on device" in lines[0]
    assert not (out / "manifest.json").exists()


def test_read_only_out_folder_is_one_line_and_exit_2(capsys, tmp_path):
    src = _corpus(tmp_path / "in", n=1, seconds=2.0)
    out = Path("/sys/telucodec-prep-test/out")  # sysfs: no folder can be made there
    if out.parent.exists():
        pytest.skip("/sys accepts new folders here")
    assert cli.main([str(src), "--out", str(out), "--quiet", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"telucodec-prep: error: {out}: creating the output folder failed")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killing_prep_ends_its_workers(tmp_path, how):
    src = tmp_path / "in"
    for i in range(2):  # long enough that each worker is busy for many seconds
        x = np.random.default_rng(i).uniform(-0.3, 0.3, 16_000 * 1200).astype(np.float32)
        synth.write(src / f"long{i}.wav", x, 16_000, "PCM_16")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shards.cli", str(src), "--out", str(out), "--workers", "2"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        workers: list[psutil.Process] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # forkserver and its two workers, which have opened their spool files
            workers = [p for p in _descendants(proc.pid) if p.pid != proc.pid]
            spools = list((out / ".spool").glob("*.spool")) if (out / ".spool").exists() else []
            if len(spools) >= 2:
                break
            time.sleep(0.2)
        assert len(spools) >= 2, "the workers never started"
        workers = _descendants(proc.pid)
        assert workers
        os.kill(proc.pid, how)
        rc = proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(workers, timeout=20)
        assert not alive, f"still running after the parent died: {alive}"
        assert rc == (-signal.SIGKILL if how == signal.SIGKILL else 143)
        assert not (out / "manifest.json").exists()
        if how == signal.SIGTERM:  # cleaned up: no spool, no half shard
            assert sorted(p.name for p in out.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in _descendants(proc.pid):
            p.kill()
