"""A damaged shard set: a corrupt FLAC member or a truncated tar is skipped, logged once and
counted, the stream stays resumable, and it stops past ``max_bad_fraction``."""

from __future__ import annotations

import itertools
import json
import logging
import tarfile
from pathlib import Path

import pytest

from shards.reader import TrainStream, resolve_shards
from shards.reader_io import TooManyBadSamples
from tests.shards._shardfactory import make_shard_set, write_tar

SR, T, B = 8000, 2000, 4
BAD = "trains1-c00004"


def corrupt_member(shard: Path, key: str) -> None:
    """Rewrite ``shard`` with every 40th byte of ``key``'s FLAC frames flipped (its header
    stays readable, so the damage shows only when it is decoded)."""
    samples = {}
    with tarfile.open(shard) as tar:
        for m in tar.getmembers():
            k, ext = m.name.split(".", 1)
            samples.setdefault(k, {})[ext] = tar.extractfile(m).read()
    flac = bytearray(samples[key]["flac"])
    for i in range(200, len(flac), 40):
        flac[i] ^= 0xFF
    samples[key]["flac"] = bytes(flac)
    write_tar(shard, [(k, v["flac"], json.loads(v["json"])) for k, v in samples.items()])


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("damaged")
    make_shard_set(folder, train=[10, 10, 10], val=[2])
    corrupt_member(folder / "train-000001.tar", BAD)
    return folder


def stream(folder: Path, **kw) -> TrainStream:
    manifest, urls = resolve_shards(folder, "train")
    args = dict(batch_size=B, segment_samples=T, seed=0, sample_rate=SR, max_bad_fraction=0.1)
    args.update(kw)
    return TrainStream(urls, [s.samples for s in manifest.splits["train"].shards], **args)


def take(it, n):
    return list(itertools.islice(it, n))


def test_a_corrupt_member_is_skipped_logged_once_and_counted(damaged, caplog):
    caplog.set_level(logging.WARNING, logger="shards.reader")
    batches = take(iter(stream(damaged)), 40)  # 160 crops: over five epochs of 30 chunks
    keys = [k for b in batches for k in b["keys"]]
    assert BAD not in keys
    assert {k for k in keys} == {f"trains{s}-c{i:05d}" for s in range(3) for i in range(10)} - {BAD}
    assert all(b["audio"].shape == (B, 1, T) for b in batches)
    assert batches[-1]["skipped_samples"] == 1
    assert max(b["epochs"][-1] for b in batches) >= 4  # met again in every epoch...
    logged = [r.getMessage() for r in caplog.records if BAD in r.getMessage()]
    assert len(logged) == 1  # ...but logged once
    assert "train-000001.tar: sample trains1-c00004 cannot decode FLAC" in logged[0]


def test_a_resumed_stream_goes_past_the_bad_sample_as_the_first_did(damaged):
    full = take(iter(stream(damaged)), 24)
    resumed = take(iter(stream(damaged, start_step=11)), 13)
    for x, y in zip(full[11:], resumed, strict=True):
        assert (x["audio"] == y["audio"]).all()
        assert (x["keys"], x["offsets"], x["epochs"]) == (y["keys"], y["offsets"], y["epochs"])


def test_a_truncated_shard_loses_only_its_tail(tmp_path, caplog):
    make_shard_set(tmp_path, train=[10, 10, 10], val=[2])
    tar = tmp_path / "train-000002.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[: int(len(data) * 0.55)])
    batches = take(iter(stream(tmp_path, max_bad_fraction=0.2)), 30)
    keys = {k for b in batches for k in b["keys"]}
    assert {f"trains{s}-c{i:05d}" for s in (0, 1) for i in range(10)} <= keys
    kept = {k for k in keys if k.startswith("trains2")}
    assert kept and max(kept) < "trains2-c00006"  # the start of the cut shard still trains
    lost = 10 - len(kept)
    assert batches[-1]["skipped_samples"] == lost
    assert any("train-000002.tar: truncated tar" in r.getMessage() for r in caplog.records)


def test_too_many_bad_samples_stop_the_stream_naming_shard_and_key(damaged):
    with pytest.raises(TooManyBadSamples, match="more than data.max_bad_sample_fraction=0 ") as e:
        take(iter(stream(damaged, max_bad_fraction=0.0)), 40)
    assert f"train-000001.tar: sample {BAD} cannot decode FLAC" in str(e.value)
    with pytest.raises(ValueError, match="max_bad_fraction"):
        stream(damaged, max_bad_fraction=1.0)
