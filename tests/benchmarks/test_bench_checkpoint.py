"""The checkpoint benchmark runs at debug size: it saves and loads the trainer's real
checkpoint (models, AdamW states after a step) and reports a size that matches the state."""

from __future__ import annotations

import re

from benchmarks import bench_checkpoint


def test_debug_preset_save_and_load_are_timed(tmp_path, capsys):
    rc = bench_checkpoint.main(
        ["--preset", "configs/debug.yaml", "--dir", str(tmp_path / "ck"), "--repeats", "2"]
    )
    assert rc == 0
    out = capsys.readouterr().out
    row = re.search(r"\| debug \| ([\d.]+) M \+ ([\d.]+) M \| (\d+) \| ([\d.]+) / [\d.]+ \|", out)
    assert row, out
    # weights + two AdamW moments in fp32: at least 12 bytes per parameter, all of it on disk
    params = (float(row.group(1)) + float(row.group(2))) * 1e6
    assert int(row.group(3)) * 2**20 >= 0.9 * 12 * params - 2**20
    assert not (tmp_path / "ck").exists()  # cleaned up
