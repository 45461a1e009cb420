"""Fixtures for the prep tests: generated recordings and a reader for written shards.

Everything is generated here (shards.synth); the only outside data is the optional shared
Telugu folder, whose tests skip when it is absent.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from shards import synth

REALDATA_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared/data/telugu-emotion").resolve()


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    if not REALDATA_DIR.is_dir():
        pytest.skip(f"shared Telugu data not found at {REALDATA_DIR}")
    return REALDATA_DIR


@pytest.fixture
def write_audio(tmp_path):
    """write_audio(name, x, rate, subtype=None) -> path under tmp_path/"in"."""

    def _write(name: str, x: np.ndarray, rate: int, subtype: str | None = None) -> Path:
        return synth.write(tmp_path / "in" / name, x, rate, subtype)

    return _write


def read_shard_set(out_dir: str | Path) -> list[dict]:
    """Every sample of every ``*.tar`` in ``out_dir`` (sorted by shard name), read back with
    tarfile + soundfile: dicts with key, shard, audio (float64), rate, meta."""
    samples = []
    for shard in sorted(Path(out_dir).glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
            by_key: dict[str, dict] = {}
            order = []
            for m in members:
                key, ext = m.name.split(".", 1)
                if key not in by_key:
                    by_key[key] = {"key": key, "shard": shard.name}
                    order.append(key)
                data = tar.extractfile(m).read()
                if ext == "flac":
                    audio, rate = sf.read(io.BytesIO(data), dtype="float64")
                    by_key[key]["audio"], by_key[key]["rate"] = audio, rate
                    by_key[key]["subtype"] = sf.info(io.BytesIO(data)).subtype
                elif ext == "json":
                    by_key[key]["meta"] = json.loads(data)
                else:
                    raise AssertionError(f"unexpected member {m.name}")
            samples += [by_key[k] for k in order]
    return samples


@pytest.fixture(scope="session")
def shard_reader():
    """read_shard_set, for tests and module-scoped fixtures."""
    return read_shard_set
