"""A tiny shard set made by the real prep pipeline, shared by the trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from shards import synth
from shards.prep import PrepConfig, prep_corpus
from shards.split import SplitConfig


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """~50 s of speech-like audio at mixed rates -> 16 kHz shards with a time-based val split
    (the last 3 s of every recording), so both splits are never empty."""
    root = tmp_path_factory.mktemp("tiny")
    corpus = root / "corpus"
    for i, rate in enumerate((16_000, 22_050, 44_100, 48_000)):
        synth.write(
            corpus / f"SPKF0{i}_rec.wav",
            synth.speech_like(12.0, rate, seed=i, peak=0.3 + 0.1 * i),
            rate,
            "PCM_16",
        )
    cfg = PrepConfig(
        chunk_seconds=4.0,
        split=SplitConfig(mode="time", val_seconds=3.0, gap_seconds=0.5),
        workers=1,
    )
    prep_corpus(corpus, root / "shards", cfg, progress=False)
    return root / "shards"
