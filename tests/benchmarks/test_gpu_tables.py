"""benchmarks/gpu_tables.py: BENCHMARKS.md's GPU section from kit records (synthetic ones
here, in tmp_path; benchmarks/results/gpu/ only ever holds real GPU records)."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_tables


def _speed_record() -> dict:
    def rec(impl, precision, step, params_g, **kw):
        return {"impl": impl, "precision": precision, "compile": False, "step_time_s": step,
                "audio_s_per_s": 12.0 / step, "peak_mem_gib": 20.0, "mfu": None,
                "params_g": params_g, "params_d": 40e6, "batch": 12,
                "segment_samples": 16000, **kw}  # fmt: skip

    ok = {"status": "ok", "seconds": 10.0, "box_s": 60}
    return {
        "kit": "speed", "device": "NVIDIA H100 80GB HBM3", "date": "2026-12-01 10:00 UTC",
        "torch": "2.11.0", "rehearsal": False, "deadline_s": 540, "elapsed_s": 530.0,
        "complete": True,
        "records": [
            rec("telucodec", "bf16", 0.1, 74e6, mfu=0.123, reader_ratio=8.0),
            rec("telucodec", "fp32", 0.25, 74e6, mfu=0.05),
            rec("dac", "fp32", 0.3, 74e6, version="1.0.0"),
            rec("encodec", "fp32", 0.12, 15e6, version="0.1.1"),
        ],
        "stages": {
            "env": {**ok, "device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "cuda": "13.0",
                    "driver": "580.1", "matmul_dtype": "bfloat16", "matmul_tflops": 700.5},
            "step-ours-bf16": ok, "step-ours-fp32": ok, "step-dac": ok, "step-encodec": ok,
            "train": {**ok, "last_step": 300, "target_steps": 300, "step_time_s": 0.11,
                      "audio_s_per_s": 109.0, "peak_mem_gib": 21.0, "nonfinite_steps": 0,
                      "losses_finite": True, "validation_table": ["step 300 validation: 64 chunks",
                                                                  "  kbps  n_q  verdict"]},
            "zero2": {"status": "timeout", "seconds": 200.0, "box_s": 200},
            "infer": {**ok, "preset": "configs/telugu16k.yaml", "precision": "fp32",
                      "block_seconds": 5.0, "n_q": 8, "best_total_x": 812.0,
                      "rows": [{"batch": 64, "audio_s": 320.0, "encode_x": 2000.0,
                                "decode_x": 1500.0, "total_x": 812.0}]},
            "compile": {"status": "skipped", "reason": "deadline near: 40 s left"},
        },
    }  # fmt: skip


def _budget_record() -> dict:
    def rec(impl, mels):
        curve = [{"step": 100 * (i + 1), "session_wall_s": 60.0 * (i + 1), "mel_distance": m,
                  "snr_db": 1.0 + i, "rms_ratio": 0.9} for i, m in enumerate(mels)]  # fmt: skip
        return {"impl": impl, "precision": "bf16" if impl == "telucodec" else "fp32",
                "kbps": 4.0, "params_g": 74e6, "steps": 900, "step_time_s": 0.2,
                "final_mel_distance": mels[-1], "final_snr_db": 3.0, "final_rms_ratio": 0.9,
                "curve": curve}  # fmt: skip

    return {"kit": "budget", "device": "NVIDIA H200", "date": "2026-12-02 10:00 UTC",
            "torch": "2.11.0", "budget_minutes": 3.5, "records": [rec("telucodec", [2.0, 1.5]),
            rec("dac", [2.1, 1.7])], "stages": {"budget-ours": {"status": "ok", "seconds": 280.0}}}  # fmt: skip


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "gpu"
    folder.mkdir()
    (folder / "2026-12-01-speed-nvidia-h100-80gb-hbm3.json").write_text(json.dumps(_speed_record()))
    (folder / "2026-12-02-budget-nvidia-h200.json").write_text(json.dumps(_budget_record()))
    return folder


def test_no_record_yet_says_so_between_the_markers(tmp_path):
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nhand-written\n")
    args = ["--results", str(tmp_path / "none"), "--benchmarks", str(md)]
    assert gpu_tables.main(["--check", *args]) == 1  # no section yet: stale
    assert gpu_tables.main(args) == 0
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written\n")
    assert gpu_tables.HEADING in text and "No GPU record exists yet" in text
    assert gpu_tables.main(["--check", *args]) == 0


def test_records_become_tables_and_only_the_region_is_rewritten(results, tmp_path):
    md = tmp_path / "B.md"
    body = f"# B\n\nbefore\n\n{gpu_tables.BEGIN}\nold text\n{gpu_tables.END}\n\nafter\n"
    md.write_text(body)
    args = ["--results", str(results), "--benchmarks", str(md)]
    assert gpu_tables.main(["--check", *args]) == 1
    assert gpu_tables.main(args) == 0
    text = md.read_text()
    assert text.startswith("# B\n\nbefore\n\n") and text.endswith(f"{gpu_tables.END}\n\nafter\n")
    assert "old text" not in text and text.count(gpu_tables.BEGIN) == 1
    # speed: the rows, the ratios against ours bf16 (throughput), the bars, the stages
    assert "| telucodec | bf16 | no | 74.00 M / 40.00 M | 12 x 16000 | 0.1000 | 120.0 | " \
           "20.00 | 12.3% | 1.00x |" in text  # fmt: skip
    assert "| dac 1.0.0 | fp32 |" in text and "| 3.00x |" in text
    assert "ours bf16 >= 2x dac's step throughput: **met** (3.00x)" in text
    assert "ours bf16 >= 1.5x encodec's step throughput: **not met** (1.20x)" in text
    assert "reader >= 5x what the step consumes: **met** (8.0x)" in text
    assert "batched inference >= 500x real time: **met** (812x)" in text
    assert "zero2 timeout 200 s" in text and "compile skipped (deadline near: 40 s left)" in text
    assert "300 of 300 steps" in text and "step 300 validation: 64 chunks" in text
    assert "DeepSpeed ZeRO-2, one GPU (run, resume, run, export): timeout" in text
    # budget: both systems, the curve, the verdict
    assert "| telucodec | bf16 | 4 | 74.00 M | 900 |" in text
    assert "| dac | 1.00 | 100 | 2.100 |" in text
    assert "**met** (ours 1.500, DAC 1.700)" in text
    assert gpu_tables.main(["--check", *args]) == 0
    assert md.read_text() == text  # a second run changes nothing


def test_a_rehearsal_or_incomplete_record_is_refused_by_name(results, tmp_path, capsys):
    md = tmp_path / "B.md"
    md.write_text("# B\n")
    bad = _speed_record()
    bad["rehearsal"] = True
    (results / "2026-12-03-speed-cpu.json").write_text(json.dumps(bad))
    assert gpu_tables.main(["--results", str(results), "--benchmarks", str(md)]) == 2
    assert "2026-12-03-speed-cpu.json: a CPU rehearsal record" in capsys.readouterr().err
    bad = _speed_record()
    del bad["records"][0]["mfu"]
    (results / "2026-12-03-speed-cpu.json").write_text(json.dumps(bad))
    assert gpu_tables.main(["--results", str(results), "--benchmarks", str(md)]) == 2
    assert "records[0] lacks ['mfu']" in capsys.readouterr().err
    assert md.read_text() == "# B\n"


def test_benchmarks_md_is_current_with_the_committed_records():
    assert gpu_tables.main(["--check"]) == 0
