"""The issue's level bars on real Telugu speech (a 60-clip subset, to stay fast).

The full-corpus numbers are measured by ``benchmarks/bench_prep.py --realdata``.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from shards import loudness
from shards.prep import PrepConfig, prep_corpus

pytestmark = pytest.mark.realdata

SUBSET = 60


@pytest.fixture(scope="module")
def realdata_run(tmp_path_factory, shard_reader, realdata_dir):
    clips = sorted(realdata_dir.rglob("*.flac"))
    step = max(1, len(clips) // SUBSET)
    subset = clips[::step][:SUBSET]
    tmp = tmp_path_factory.mktemp("realdata")
    listing = tmp / "subset.txt"
    listing.write_text("\n".join(str(p) for p in subset) + "\n")
    result = prep_corpus(listing, tmp / "out", PrepConfig(), progress=False)
    return {
        "clips": subset,
        "result": result,
        "samples": shard_reader(tmp / "out"),
    }


def test_chunks_on_target_unless_guarded_and_guard_is_rare(realdata_run):
    samples = realdata_run["samples"]
    target = PrepConfig().loudness_target_lufs
    assert len(samples) > 40
    guarded = 0
    for s in samples:
        measured = loudness.integrated_loudness(s["audio"], 16_000)
        if s["meta"]["peak_guard"]:
            guarded += 1
            assert measured < target
        else:
            assert abs(measured - target) < 0.5
    assert guarded / len(samples) < 0.10


def test_no_sample_at_or_beyond_full_scale(realdata_run):
    peak = max(float(np.max(np.abs(s["audio"]))) for s in realdata_run["samples"])
    assert peak < 10 ** (-1 / 20) + 2.0**-23 < 1.0


def test_every_input_second_accounted_for(realdata_run):
    report = realdata_run["result"].report
    total = sum(sf.info(str(p)).duration for p in realdata_run["clips"])
    assert report["input"]["seconds"] == pytest.approx(total, abs=1e-4)
    assert sum(report["seconds"].values()) == pytest.approx(total, abs=1e-4)
    assert report["rejected"] == []
