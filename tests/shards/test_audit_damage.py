"""telucodec-audit on a damaged shard set: every member read, checksums checked, damage
listed by file and key, exit status 1 and no traceback."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from shards import synth
from shards.audit import audit_shards, main
from shards.manifest import load_manifest
from shards.prep import PrepConfig, prep_corpus
from shards.split import SplitConfig

RATE = 16_000


@pytest.fixture(scope="module")
def prepped(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audit_damage")
    for i in range(2):
        synth.write(
            root / "in" / f"r{i}.wav", synth.speech_like(12.0, RATE, seed=i), RATE, "PCM_16"
        )
    cfg = PrepConfig(
        chunk_seconds=2.0,
        max_shard_samples=3,
        split=SplitConfig(mode="time", val_seconds=2.0, gap_seconds=0.0),
        workers=1,
    )
    prep_corpus(root / "in", root / "shards", cfg, progress=False)
    return root / "shards"


def test_prep_records_each_shards_sha256_and_audit_verifies_them(prepped):
    m = load_manifest(prepped)
    infos = [s for split in m.splits.values() for s in split.shards]
    for s in infos:
        assert s.sha256 == hashlib.sha256((prepped / s.name).read_bytes()).hexdigest()
    rep = audit_shards(prepped)
    assert rep.damaged == [] and rep.problems() == []
    assert rep.checksums == f"{len(infos)} of {len(infos)} verified"


def test_damaged_members_and_shards_are_listed_without_a_traceback(prepped, tmp_path, capsys):
    bad = tmp_path / "shards"
    shutil.copytree(prepped, bad)
    first = bad / "train-000000.tar"
    data = bytearray(first.read_bytes())
    at = data.index(b"fLaC", data.index(b"fLaC") + 4)  # the second chunk's FLAC
    for i in range(at + 200, at + 4000, 40):
        data[i] ^= 0xFF
    first.write_bytes(bytes(data))
    cut = bad / "train-000001.tar"
    cut.write_bytes(cut.read_bytes()[:5000])
    rc = main([str(bad)])
    out, err = capsys.readouterr()
    # every member read and listed in the report; one error line names the first damage
    assert rc == 2
    assert (
        err.startswith(f"telucodec-audit: error: {first}: sha256 differs") and err.count("\n") == 1
    )
    assert f"{first}: sha256 differs from the manifest's" in out
    assert f"{first}: sample r0_wav-c00001 cannot be decoded" in out
    assert f"{cut}: truncated tar" in out
    assert f"{cut}: 0 samples could be read, the manifest lists 3" in out
    assert "PROBLEM: " in out and "damaged shards or samples" in out
    assert "shard checksums: " in out and "Traceback" not in out
