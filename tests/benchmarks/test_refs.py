"""The reference step timers (benchmarks/refs/*_step.py) in their own venv.

They run with the reference venv's python (``scripts/ref-venvs.sh``), exactly as the step
benchmark calls them, and must print one JSON line the benchmark can read. Skipped, with the
command to run, when that venv has not been made.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REF_VENV = Path(os.environ.get("REF_VENV", ROOT / ".venv-ref"))
if not REF_VENV.is_absolute():
    REF_VENV = ROOT / REF_VENV
REF_PYTHON = REF_VENV / "bin" / "python"
IMPLS = ("dac", "encodec")
KEYS = {
    "impl",
    "version",
    "device",
    "batch",
    "segment_samples",
    "params_generator",
    "params_discriminator",
    "step_times_s",
    "step_time_s_median",
    "audio_seconds_per_second",
    "peak_rss_gib",
    "precision",
    "notes",
    "recon_loss_per_step",
}

pytestmark = pytest.mark.skipif(
    not (REF_PYTHON.exists() and (REF_VENV / ".installed").exists()),
    reason=f"reference venv not installed at {REF_VENV}: run `bash scripts/ref-venvs.sh`",
)


def run_ref(impl: str, *args: str) -> subprocess.CompletedProcess:
    """Runs ``benchmarks/refs/<impl>_step.py`` with the reference python from the repo root."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    env.pop("PYTHONPATH", None)  # the scripts must stand alone, without our packages
    return subprocess.run(
        [str(REF_PYTHON), f"benchmarks/refs/{impl}_step.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def parse(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line, got: {proc.stdout[-2000:]}"
    return json.loads(lines[0])


@pytest.fixture(scope="module", params=IMPLS)
def tiny_record(request) -> dict:
    batch, samples = 2, 4096
    proc = run_ref(
        request.param,
        "--tiny",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--device",
        "cpu",
        "--batch",
        str(batch),
        "--segment-samples",
        str(samples),
    )
    return {"impl": request.param, "record": parse(proc), "batch": batch, "samples": samples}


def test_json_contract(tiny_record):
    r, impl = tiny_record["record"], tiny_record["impl"]
    assert KEYS <= r.keys(), KEYS - r.keys()
    assert r["impl"] == impl and r["version"] and r["device"] == "cpu"
    assert (r["batch"], r["segment_samples"]) == (tiny_record["batch"], tiny_record["samples"])
    assert r["precision"] == "fp32" and r["tiny"] is True
    assert r["params_generator"] > 0 and r["params_discriminator"] > 0
    # --tiny really shrinks the generator (recipe sizes measured: DAC 74.2 M, EnCodec 14.9 M),
    # or CI would be running the full model.
    assert r["params_generator"] < {"dac": 7_400_000, "encodec": 1_400_000}[impl]
    times = r["step_times_s"]
    assert len(times) == 2 and all(math.isfinite(t) and t > 0 for t in times)
    assert min(times) <= r["step_time_s_median"] <= max(times)
    expected = r["batch"] * r["segment_samples"] / 16000 / r["step_time_s_median"]
    assert r["audio_seconds_per_second"] == pytest.approx(expected)
    # CPU: peak RSS under its own name; peak_mem_gib (CUDA max allocated) only on a GPU
    assert "peak_mem_gib" not in r and 0.01 < r["peak_rss_gib"] < 64
    assert len(r["recon_loss_per_step"]) == 3  # warmup + timed steps
    assert all(math.isfinite(v) for v in r["recon_loss_per_step"])


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_reference_step_learns_a_fixed_batch(impl):
    """12 steps on one batch lower the reconstruction loss: the wiring (optimizers on the right
    parameters, losses back-propagated, balancer scales) is live, not only timed."""
    r = parse(
        run_ref(
            impl,
            "--tiny",
            "--steps",
            "12",
            "--warmup",
            "0",
            "--batch",
            "1",
            "--segment-samples",
            "4096",
        )
    )
    losses = r["recon_loss_per_step"]
    assert len(losses) == 12
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.97 * first, losses


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_segment_length_is_named(impl):
    proc = run_ref(impl, "--segment-samples", "100")
    assert proc.returncode != 0
    assert "--segment-samples" in proc.stderr and "100" in proc.stderr
    assert proc.stdout.strip() == ""
