"""The shard audit passes a set made by prep and flags sets made by broken normalisers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shards import synth
from shards.audit import audit_shards, full_scale_runs, main
from shards.manifest import Manifest, ShardInfo, SplitInfo
from shards.prep import PrepConfig, prep_corpus
from shards.split import SplitConfig
from tests.shards._shardfactory import flac_bytes, write_tar

RATE = 16_000


@pytest.fixture(scope="module")
def prepped(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audit")
    for i, peak in enumerate((0.05, 0.3, 0.9)):  # levels 25 dB apart before normalisation
        synth.write(
            root / "in" / f"SPKF0{i}_take.wav",
            synth.speech_like(9.0, RATE, seed=i, peak=peak),
            RATE,
        )
    cfg = PrepConfig(chunk_seconds=3.0, split=SplitConfig(mode="time", val_seconds=3.0), workers=1)
    prep_corpus(root / "in", root / "shards", cfg, progress=False)
    return root / "shards"


def _broken_set(folder: Path, normalise) -> Path:
    """Chunks of speech at spread source levels, levelled by ``normalise`` (a broken
    normaliser), written in the shard format with metadata claiming a -26 LUFS target."""
    folder.mkdir(parents=True)
    samples = []
    for i, peak in enumerate((0.05, 0.1, 0.3, 0.6, 0.9, 0.2)):
        x = synth.speech_like(2.0, RATE, seed=10 + i, peak=peak).astype(np.float32)
        y = normalise(x)
        meta = {"source": f"rec{i}.wav", "speaker": f"SPKF{i % 2}", "peak_guard": False}
        samples.append((f"rec{i}-c00000", flac_bytes(y, RATE), meta))
    write_tar(folder / "train-000000.tar", samples)
    m = Manifest(
        sample_rate=RATE,
        loudness_target_lufs=-26.0,
        peak_ceiling_dbfs=-1.0,
        chunk_seconds=2.0,
        splits={"train": SplitInfo([ShardInfo("train-000000.tar", len(samples), 12.0)])},
    )
    m.save(folder)
    return folder


def test_prepped_set_passes_with_totals_and_png(prepped, tmp_path, capsys):
    rep = audit_shards(prepped)
    assert rep.problems() == [], rep.summary()
    lv = [c.loudness_lufs for c in rep.chunks if not c.meta["peak_guard"]]
    assert max(abs(v + 26.0) for v in lv) < 0.5
    assert all(c.rate == RATE and c.peak < 0.9 for c in rep.chunks)
    assert all("source_clip_runs" in c.meta for c in rep.chunks)  # prep records it now
    assert set(rep.totals("speaker")) == {"SPKF00", "SPKF01", "SPKF02"}
    png = tmp_path / "levels.png"
    assert main([str(prepped), "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "per speaker: 3" in out and "silence dropped:" in out and "PROBLEM" not in out


def test_peak_normalised_set_is_flagged(tmp_path, capsys):
    # per-clip peak normalisation to -1 dBFS: peaks equal, loudness spread with the crest
    folder = _broken_set(tmp_path / "peak", lambda x: x * (0.891 / np.abs(x).max()))
    rep = audit_shards(folder)
    probs = rep.problems()
    assert len(probs) == 1 and "were not loudness-normalised" in probs[0], probs
    assert main([str(folder), "--json", str(tmp_path / "a.json")]) == 1
    assert json.loads((tmp_path / "a.json").read_text())["problems"] == probs
    assert "PROBLEM:" in capsys.readouterr().out


def test_clipped_set_is_flagged(tmp_path):
    # "normalised" by a fixed +20 dB gain and hard-clipped: full scale, clipping runs
    folder = _broken_set(tmp_path / "clip", lambda x: np.clip(x * 10, -1.0, 1.0))
    rep = audit_shards(folder)
    probs = " | ".join(rep.problems())
    assert "reach full scale" in probs and "not loudness-normalised" in probs
    assert sum(c.clip_runs for c in rep.chunks) > 0


def test_full_scale_runs_counts_flat_tops_only():
    x = np.zeros(20)
    x[2] = 1.0  # isolated peak: not a run
    x[5:9] = 0.9995  # a run of 4
    x[12:15] = -1.0  # a run of 3 (negative)
    assert full_scale_runs(x) == 2
    assert full_scale_runs(x, min_run=4) == 1
    assert full_scale_runs(np.zeros(5)) == 0
