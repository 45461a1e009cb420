"""The inference benchmark runs end to end at debug sizes (so it cannot rot), including the
long round trip on held-out speech from a shard folder with a given export."""

from __future__ import annotations

import re

from benchmarks import bench_infer
from benchmarks.bench_step import prepare_shards


def test_tiny_run_prints_every_section(tmp_path, capsys):
    shards = prepare_shards(None, tmp_path, tiny=True)
    export = bench_infer.make_export("configs/debug.yaml", tmp_path / "export")
    rc = bench_infer.main(
        [
            "--preset", "configs/debug.yaml", "--seconds", "2", "--n-q", "2",
            "--options", "fp32", "--blocks", "", "--thread-counts", "", "--batches", "1,2",
            "--block-seconds", "1", "--long-hours", "0.005", "--long-model", str(export),
            "--long-source", str(shards),
        ]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "Payload vs nominal bitrate" in out and "| +0.00% |" in out
    assert re.search(r"\| fp32 \| 1 \| \d+ \| 2 \| [\d.]+x \|", out)
    assert "| cpu | 2 | 2 |" in out
    assert "held-out speech" in out and f"trained export {export}" in out
    # 18 s at 16 kHz, and the output is exactly as long
    assert "- length in 288000 samples, out 288000 samples" in out
    assert re.search(r"LU; within 0\.5 LU: \*\*(met|not met)\*\*\)", out)
