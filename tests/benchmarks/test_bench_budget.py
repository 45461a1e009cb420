"""The fixed-budget quality benchmark (benchmarks/bench_budget.py): both systems train for
the same wall-clock budget on the same chunks, validate at the same interval, and their
curves are scored with one metric implementation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmarks import bench_budget
from codec import metrics
from tests.benchmarks.test_refs import REF_PYTHON, REF_VENV

needs_ref_venv = pytest.mark.skipif(
    not (REF_PYTHON.exists() and (REF_VENV / ".installed").exists()),
    reason=f"reference venv not installed at {REF_VENV}: run `bash scripts/ref-venvs.sh`",
)


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@needs_ref_venv
def test_tiny_budget_run_gives_both_curves(tmp_path):
    minutes, every = 0.25, 0.1
    rc = bench_budget.main(
        [
            "--tiny", "--minutes", str(minutes), "--val-every-minutes", str(every),
            "--workdir", str(tmp_path), "--ref-python", str(REF_PYTHON),
            "data.num_workers=1",
        ]
    )  # fmt: skip
    assert rc == 0
    runs = {s: json.loads((tmp_path / f"budget_{s}.json").read_text()) for s in ("ours", "dac")}
    for name, r in runs.items():
        curve = r["curve"]
        # validations at the interval inside the budget, then one at the end (not twice)
        assert len(curve) >= 2, name
        walls = [p["session_wall_s"] for p in curve]
        assert walls == sorted(walls) and walls[0] >= every * 60 * 0.99, name
        assert walls[-1] >= minutes * 60 * 0.99, name  # the budget was used
        assert walls[-1] <= minutes * 60 + 30, name  # and not overrun by much
        steps = [p["step"] for p in curve]
        assert len(set(steps)) == len(steps) and steps[-1] == r["steps"] > 0, name
        assert all(math.isfinite(p["mel_distance"]) and p["mel_distance"] > 0 for p in curve)
        assert (r["batch"], r["segment_samples"], r["val_chunks"]) == (2, 3200, 3), name
    assert runs["ours"]["n_quantizers"] == 4 and runs["dac"]["n_quantizers"] == 4
    assert not list((tmp_path / "dac").glob("val_*.npz"))  # decoded audio scored, then gone
    md = (tmp_path / "budget.md").read_text()
    assert "| ours |" in md and "| dac |" in md and "Bar (lower validation mel" in md
    assert (tmp_path / "budget.png").stat().st_size > 1000
    # --report-only rebuilds the same table from the JSON files alone
    assert bench_budget.main(["--report-only", "--workdir", str(tmp_path)]) == 0
    assert (tmp_path / "budget.md").read_text() == md


def test_score_uses_the_validation_metrics_over_the_common_span():
    g = torch.Generator().manual_seed(0)
    val = [torch.randn(4000, generator=g) * 0.1, torch.randn(3000, generator=g) * 0.1]
    outs = [(0.5 * v[:-8]).numpy() for v in val]  # DAC returns up to 8 samples short
    got = bench_budget.score(val, outs, 16000)
    assert got["snr_db"] == pytest.approx(20 * math.log10(2), abs=1e-3)
    assert got["rms_ratio"] == pytest.approx(0.5, abs=1e-4)
    want = np.mean(
        [
            metrics.mel_distance(
                v[:-8].view(1, 1, -1), torch.from_numpy(o).view(1, 1, -1), 16000
            ).item()
            for v, o in zip(val, outs, strict=True)
        ]
    )
    assert got["mel_distance"] == pytest.approx(want)
    with pytest.raises(ValueError, match="1 decoded chunks for 2"):
        bench_budget.score(val, outs[:1], 16000)


def test_export_chunks_matches_the_validation_hook(tmp_path):
    from benchmarks.bench_step import prepare_shards
    from shards.reader import iter_chunks, iter_validation

    shards = prepare_shards(None, tmp_path, tiny=True)
    sizes = bench_budget.export_chunks(shards, tmp_path / "arrays", val_items=2, val_seconds=300)
    val = bench_budget.load_val(tmp_path / "arrays" / "val.npz")
    hook = [item.audio.reshape(-1) for item in iter_validation(shards, max_items=2)]
    assert len(val) == len(hook) == sizes["val"]["chunks"] == 2
    assert all(torch.equal(a, b) for a, b in zip(val, hook, strict=True))
    train = sum(item.audio.shape[-1] for item in iter_chunks(shards, "train"))
    assert sizes["train"]["samples"] == train > 0


def test_bad_arguments_are_named(capsys, tmp_path):
    assert bench_budget.main(["--systems", "ours,encodec", "--workdir", str(tmp_path)]) == 2
    assert "unknown ['encodec']" in capsys.readouterr().err
    assert bench_budget.main(["--minutes", "0", "--workdir", str(tmp_path)]) == 2
    assert "--minutes must be > 0" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no budget_<system>.json"):
        bench_budget.main(["--report-only", "--workdir", str(tmp_path)])
