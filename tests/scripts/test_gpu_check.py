"""scripts/gpu_check.py: the time-boxed GPU kit, rehearsed on the CPU at debug sizes.

The speed kit's rehearsal runs once for the module (its stages in their own processes,
the DAC/EnCodec timers in .venv-ref when it exists); one of its stages is made to overrun
its box, so the same run proves that the orchestrator cuts it and the later stages still
report. The pure parts (boxes, budget fitting, default kit) are tested directly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import gpu_check
from scripts._gpu_train import summarise_metrics, validation_table

REPO = Path(__file__).resolve().parents[2]
REF_PYTHON = REPO / ".venv-ref" / "bin" / "python"
HAVE_REFS = REF_PYTHON.is_file()


def _run(out: Path, work: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "scripts/gpu_check.py", "--rehearse", "--out", str(out),
           "--workdir", str(work), "--ref-python", str(REF_PYTHON), *args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    files = sorted(p for p in out.iterdir())
    records = [p for p in files if p.suffix == ".json"]
    assert len(records) == 1, files
    return proc, json.loads(records[0].read_text())


# ----------------------------------------------------------------------------- pure parts


def test_a_stage_box_is_its_cap_then_what_the_deadline_leaves():
    st = gpu_check.Stage("x", cap_s=100, min_s=30, rehearse_cap_s=20, rehearse_min_s=5)
    assert gpu_check.stage_box(st, False, 500) == (100, None)
    assert gpu_check.stage_box(st, True, 500) == (20, None)
    box, why = gpu_check.stage_box(st, False, 60)  # 60 s left: the box shrinks to fit
    assert box == 60 - gpu_check.RESERVE_S and why is None
    box, why = gpu_check.stage_box(st, False, 30)  # under its minimum: skipped, not started
    assert box is None and "deadline near" in why
    # a cap the user gave runs even under the minimum, but never past the deadline
    assert gpu_check.stage_box(st, False, 30, cap_s=10, strict=False) == (10, None)
    box, why = gpu_check.stage_box(st, False, 3, cap_s=10, strict=False)
    assert box is None and "deadline reached" in why


def test_the_budget_shrinks_so_both_systems_fit_the_deadline():
    assert gpu_check.budget_minutes(4.0, 3600, False) == 4.0
    m = gpu_check.budget_minutes(4.0, 540, False)
    overhead = gpu_check.BUDGET_OVERHEAD_S[False] + gpu_check.RESERVE_S
    assert m < 4.0 and 2 * (m * 60 + overhead) == pytest.approx(540)
    assert gpu_check.budget_minutes(4.0, 10, False) == 0.0


def test_the_default_kit_is_the_first_without_a_record(tmp_path):
    assert gpu_check.default_kit(tmp_path) == "speed"
    (tmp_path / "2026-12-01-speed-nvidia-h100-80gb-hbm3.json").write_text("{}")
    assert gpu_check.default_kit(tmp_path) == "budget"
    (tmp_path / "2026-12-02-budget-nvidia-h200.json").write_text("{}")
    assert gpu_check.default_kit(tmp_path) == "speed"


def test_device_names_become_file_name_parts():
    assert gpu_check.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_check.slug("cpu") == "cpu"


@pytest.mark.parametrize(
    "args, named",
    [
        (["--kit", "speed", "--stages", "nope"], "--stages"),
        (["--kit", "speed", "--stage-timeout", "train"], "--stage-timeout"),
        (["--kit", "speed", "--stage-timeout", "nope=3"], "--stage-timeout"),
        (["--kit", "budget", "--deadline", "0"], "--deadline"),
        (["--kit", "speed", "--data", "/no/such/folder"], "--data"),
        (["--kit", "speed"], "--workdir"),
    ],
)
def test_bad_arguments_are_refused_by_name(tmp_path, capsys, args, named):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("not the kit's")
    args = [*args, "--workdir", str(tmp_path / ("mine" if named == "--workdir" else "w"))]
    assert gpu_check.main(["--rehearse", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err
    assert not (tmp_path / "o").exists()


def test_metrics_and_the_validation_table_are_read_from_a_run(tmp_path):
    rows = [
        {"step": 10, "perf/step_time_s": 0.9, "perf/audio_seconds_per_second": 13.3,
         "loss/mel": 2.0, "guard/nonfinite_steps": 0, "perf/gpu_mem_peak_gib": 10.0},
        {"step": 20, "perf/step_time_s": 0.5, "perf/audio_seconds_per_second": 24.0,
         "loss/mel": 1.5, "guard/nonfinite_steps": 1, "perf/gpu_mem_peak_gib": 12.5},
        {"step": 30, "perf/step_time_s": 0.3, "perf/audio_seconds_per_second": 40.0,
         "loss/mel": float("nan"), "guard/nonfinite_steps": 1},
        {"step": 30, "val/session_wall_s": 99.0, "val/4kbps/snr_db": 3.5,
         "val/4kbps/mel_distance": 1.2, "val/4kbps/rms_ratio": 0.9,
         "val/4kbps/level_0-60Hz": 0.5, "val/4kbps/out_peak": 0.7},
    ]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    m = summarise_metrics(tmp_path, skip_steps=10)
    assert m["step_time_s"] == pytest.approx(0.4)  # median of the windows after step 10
    assert m["audio_s_per_s"] == pytest.approx(32.0)
    assert m["peak_mem_gib"] == 12.5 and m["nonfinite_steps"] == 1 and m["last_step"] == 30
    assert m["losses_finite"] is False
    assert m["validation"] == {
        "step": 30,
        "per_kbps": {"4": {"snr_db": 3.5, "mel_distance": 1.2, "rms_ratio": 0.9,
                           "level_0-60Hz": 0.5}},
    }  # fmt: skip
    log = [
        "12:00:00 [rank 0] step 3 validation: 2 chunks, 4.0 s",
        "  kbps  n_q   SNR dB ... verdict",
        "     4    8     1.00 ... ok (0.5 s)",
        "12:00:01 [rank 0] step 4 | mel 2.0",
        "12:00:02 [rank 0] step 6 validation: 2 chunks, 4.0 s",
        "  kbps  n_q   SNR dB ... verdict",
        "     4    8     2.00 ... level problem (0.4 s)",
        "12:00:03 [rank 0] checkpoint x",
    ]
    assert validation_table(log) == [
        "step 6 validation: 2 chunks, 4.0 s",
        "  kbps  n_q   SNR dB ... verdict",
        "     4    8     2.00 ... level problem (0.4 s)",
    ]


# ----------------------------------------------------------------------------- rehearsal


@pytest.fixture(scope="module")
def speed(tmp_path_factory):
    """The speed kit rehearsed (torch.compile left to check-gpu-kit: minutes on 2 cores),
    with step-ours-fp32 sleeping past a 3 s box."""
    out = tmp_path_factory.mktemp("out")
    stages = "step-ours-bf16,step-ours-fp32,step-dac,step-encodec,train,zero2,infer"
    proc, doc = _run(out, tmp_path_factory.mktemp("work"), "--kit", "speed", "--stages", stages,
                     "--stage-timeout", "step-ours-fp32=3", "--_sleep", "step-ours-fp32=300")  # fmt: skip
    return out, proc, doc


@pytest.mark.slow
def test_rehearsal_writes_the_envelope_and_a_log(speed):
    out, proc, doc = speed
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and gpu_check.LOG_NAME in names  # the record and the log only
    assert names[0].endswith("-speed-cpu.json")
    assert doc["kit"] == "speed" and doc["device"] == "cpu" and doc["torch"].startswith("2.")
    assert doc["rehearsal"] is True and doc["complete"] is True
    assert list(doc["stages"]) == [
        "env", "data", "step-ours-bf16", "step-ours-fp32", "step-dac", "step-encodec", "train",
        "zero2", "infer",
    ]  # fmt: skip
    assert doc["stages"]["env"]["matmul_tflops"] > 0
    assert "===== train: ok" in (out / gpu_check.LOG_NAME).read_text()


@pytest.mark.slow
def test_an_overrunning_stage_is_cut_and_the_later_stages_still_report(speed):
    _, _, doc = speed
    cut = doc["stages"]["step-ours-fp32"]
    assert cut["status"] == "timeout" and cut["box_s"] == 3
    assert not any(r["precision"] == "fp32" and r["impl"] == "telucodec" for r in doc["records"])
    for later in ("train", "zero2", "infer"):
        assert doc["stages"][later]["status"] == "ok", doc["stages"][later]


@pytest.mark.slow
def test_step_records_have_the_schema_and_sane_values(speed):
    _, _, doc = speed
    recs = {r["impl"]: r for r in doc["records"]}
    ours = recs["telucodec"]
    assert ours["precision"] == "bf16" and ours["compile"] is False
    assert ours["timed_steps"] == 2 and ours["skipped_steps"] == 0
    assert ours["params_g"] > 0 and ours["params_d"] > 0
    assert ours["audio_s_per_s"] == pytest.approx(
        ours["batch"] * ours["segment_samples"] / 16_000 / ours["step_time_s"]
    )
    assert 0 < ours["mfu"] < 1 and ours["peak_mem_gib"] > 0 and ours["reader_ratio"] > 0
    if HAVE_REFS:
        for impl in ("dac", "encodec"):
            r = recs[impl]
            assert set(gpu_check_fields()) <= set(r)
            assert r["batch"] == ours["batch"] and r["segment_samples"] == ours["segment_samples"]
            assert r["precision"] == "fp32" and r["step_time_s"] > 0 and r["params_g"] > 0
    else:
        for impl in ("dac", "encodec"):
            assert doc["stages"][f"step-{impl}"]["status"] == "skipped"
    for r in doc["records"]:
        assert set(gpu_check_fields()) <= set(r)
        assert all(math.isfinite(r[k]) for k in ("step_time_s", "audio_s_per_s"))


def gpu_check_fields() -> tuple[str, ...]:
    from benchmarks.gpu_tables import SPEED_FIELDS

    return SPEED_FIELDS


@pytest.mark.slow
def test_training_zero2_and_inference_stages_report_their_figures(speed):
    _, _, doc = speed
    train = doc["stages"]["train"]
    assert train["last_step"] == train["target_steps"] == 4 and train["losses_finite"]
    assert train["nonfinite_steps"] == 0 and train["step_time_s"] > 0
    assert sorted(train["validation"]["per_kbps"]) == ["0.3", "0.6", "1.2"]
    for v in train["validation"]["per_kbps"].values():
        assert {"snr_db", "mel_distance", "rms_ratio", "level_0-60Hz"} <= set(v)
    assert "verdict" in train["validation_table"][1] and "stopped: max_steps" in train["stopped"]
    z = doc["stages"]["zero2"]
    assert z["logged_steps"] == [1, 2, 3, 4] and "at step 2" in z["resumed"]
    assert z["export_matches_live"] is True and z["losses_finite"]
    inf = doc["stages"]["infer"]
    assert [r["batch"] for r in inf["rows"]] == [1, 2] and inf["best_total_x"] > 0
    assert inf["meets_500x"] == (inf["best_total_x"] >= 500)


@pytest.mark.slow
def test_the_rehearsal_record_renders_as_gpu_tables(speed):
    from benchmarks import gpu_tables

    _, _, doc = speed
    md = gpu_tables.render([("rehearsal.json", {**doc, "rehearsal": False})])
    assert "| telucodec | bf16 | no |" in md
    assert "step-ours-fp32 timeout" in md and "export from the checkpoint matches" in md


@pytest.mark.slow
def test_the_deadline_cuts_a_stage_and_skips_what_no_longer_fits(tmp_path):
    out = tmp_path / "out"
    _, doc = _run(out, tmp_path / "w", "--kit", "speed", "--stages", "infer",
                  "--deadline", "14", "--_sleep", "env=300")  # fmt: skip
    env, infer = doc["stages"]["env"], doc["stages"]["infer"]
    assert env["status"] == "timeout" and env["box_s"] == pytest.approx(
        14 - gpu_check.RESERVE_S, abs=0.5
    )
    assert infer["status"] == "skipped" and "deadline" in infer["reason"]
    assert doc["complete"] is True and doc["device"] is None


@pytest.mark.slow
def test_budget_kit_rehearsal_records_a_curve(tmp_path):
    _, doc = _run(tmp_path / "out", tmp_path / "w", "--kit", "budget", "--minutes", "0.05",
                  "--stages", "budget-ours")  # fmt: skip
    assert doc["kit"] == "budget" and doc["budget_minutes"] == 0.05
    assert doc["stages"]["budget-ours"]["status"] == "ok"
    (ours,) = doc["records"]
    assert ours["impl"] == "telucodec" and ours["steps"] >= 1 and ours["minutes"] == 0.05
    assert ours["curve"] and all(math.isfinite(p["mel_distance"]) for p in ours["curve"])


def test_the_printed_call_measures_the_carry_and_refuses_a_missing_part(tmp_path):
    from scripts import _gpu_carry
    from telucodec.errors import UserInputError

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(".whl/\n")
    (tmp_path / "code.py").write_bytes(b"x" * 1000)
    (tmp_path / ".whl" / "core").mkdir(parents=True)
    (tmp_path / ".whl" / "core" / "a.whl").write_bytes(b"w" * 5000)
    sizes = _gpu_carry.carried(tmp_path, (".whl/core",))
    assert sizes == {"tree": 1000 + len(".whl/\n"), ".whl/core": 5000}  # ignored: counted once
    text = _gpu_carry.command_text(sizes, "budget")
    assert "next kit without a record in benchmarks/results/gpu/: budget" in text
    assert "timeout_s: 600" in text and "scripts/gpu_check.py --out $OUT" in text
    with pytest.raises(UserInputError, match=".gpu-data: missing"):
        _gpu_carry.carried(tmp_path, (".whl/core", ".gpu-data"))


def test_a_stopped_command_keeps_its_record_and_ends_the_running_stage(tmp_path):
    """The device tool's own limit (SIGTERM): the running stage's group is killed and the
    record says which stage it was."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "scripts/gpu_check.py", "--rehearse", "--kit", "speed", "--out",
           str(out), "--workdir", str(tmp_path / "w"), "--stages", "env", "--_sleep", "env=300"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):  # until the env stage is recorded as running
            docs = [json.loads(p.read_text()) for p in out.glob("*.json")] if out.is_dir() else []
            if docs and docs[0]["stages"].get("env", {}).get("status") == "running":
                break
            time.sleep(0.1)
        else:
            pytest.fail("the env stage never showed as running")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    (doc,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert doc["stopped_by_signal"] == signal.SIGTERM and doc["complete"] is False
    assert doc["stages"]["env"]["status"] == "killed"
    sleeping = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "w" / "plan.json")], capture_output=True
    )
    assert sleeping.returncode == 1, sleeping.stdout  # the stage's process went with its group
