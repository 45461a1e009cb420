"""The eval-scoring benchmark runs at tiny sizes: whole-file and segmented rows, and a
child that dies becomes a "crashed" row instead of ending the benchmark."""

from __future__ import annotations

import re

from benchmarks import bench_eval


def test_tiny_run_prints_both_kinds_of_rows(capsys):
    rc = bench_eval.main(
        ["--whole-minutes", "0.05", "--segmented-minutes", "0.1", "--segment-seconds", "2"]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert re.search(r"\| whole file \| 0.05 \| 1 \| [\d.]+ \| [\d.]+ \([\d.]+\) \|", out), out
    assert re.search(r"\| 2 s pieces \| 0.1 \| 3 \| ", out), out  # 6 s in 2 s pieces


def test_a_crashing_child_is_a_row_not_an_abort(monkeypatch):
    monkeypatch.setattr(bench_eval, "CHILD", "import os, signal; os.kill(os.getpid(), 11)")
    assert bench_eval.run(1, 0) == {"crash": "signal SIGSEGV"}
