"""The shard reader: crops, slot splitting, determinism, resume, validation, URLs, errors."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import numpy as np
import pytest
import torch

from shards.manifest import load_manifest
from shards.reader import TrainStream, iter_validation, make_train_loader, resolve_shards
from shards.reader_io import FlacChunk, flac_streaminfo
from tests.shards._shardfactory import expected_chunk, flac_bytes, make_shard_set

SR = 8000
T = 2000  # 0.25 s segments; chunks are 4000 samples, every 4th one 1600 (shorter than T)
B = 4


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    """3 train shards holding 5, 1 and 12 chunks; 2 val shards."""
    folder = tmp_path_factory.mktemp("uneven")
    make_shard_set(folder, train=[5, 1, 12], val=[2, 3])
    return folder


def stream(folder, **kw) -> TrainStream:
    manifest, urls = resolve_shards(folder, "train", kw.pop("base", None))
    args = dict(batch_size=B, segment_samples=T, seed=0, sample_rate=SR)
    args.update(kw)
    return TrainStream(urls, [s.samples for s in manifest.splits["train"].shards], **args)


def take(it, n):
    return list(itertools.islice(it, n))


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["audio"], y["audio"])
        for name in ("keys", "lengths", "offsets", "epochs"):
            assert x[name] == y[name], name


def train_keys(folder) -> set[str]:
    m = load_manifest(folder)
    return {
        f"trains{i}-c{j:05d}"
        for i, s in enumerate(m.splits["train"].shards)
        for j in range(s.samples)
    }


def test_batches_hold_crops_of_the_stored_chunks(uneven):
    batches = take(iter(stream(uneven, crops_per_chunk=2)), 12)
    padded = 0
    for batch in batches:
        audio = batch["audio"]
        assert audio.shape == (B, 1, T) and audio.dtype == torch.float32
        assert len(batch["keys"]) == len(batch["lengths"]) == len(batch["offsets"]) == B
        for i, key in enumerate(batch["keys"]):
            ref = expected_chunk(key)
            off, n = int(batch["offsets"][i]), int(batch["lengths"][i])
            assert n == min(len(ref), T)
            assert 0 <= off <= max(0, len(ref) - T)
            np.testing.assert_array_equal(audio[i, 0, :n].numpy(), ref[off : off + n])
            assert not audio[i, 0, n:].any()  # short chunks: zero padding after `lengths`
            padded += n < T
    assert padded > 0  # the set has short chunks, and they were padded, not skipped


def test_same_arguments_same_batches_other_seed_other_batches(uneven):
    a = take(iter(stream(uneven, crops_per_chunk=3)), 10)
    b = take(iter(stream(uneven, crops_per_chunk=3)), 10)
    assert_same(a, b)
    c = take(iter(stream(uneven, crops_per_chunk=3, seed=1)), 10)
    assert [x["keys"] for x in a] != [x["keys"] for x in c]
    assert [x["offsets"] for x in a] != [x["offsets"] for x in c]


@pytest.mark.parametrize(
    "train, world_size, workers",
    [
        ([5, 1, 12], 1, 0),
        ([5, 1, 12], 2, 2),  # fewer shards (3) than slots (4): shards are split
        ([2, 9], 3, 2),  # 6 slots over 2 shards, one of them tiny
        ([3, 4, 2, 6, 5, 1, 7], 2, 1),  # more shards than slots
    ],
)
def test_each_epoch_deals_every_sample_to_exactly_one_slot(tmp_path, train, world_size, workers):
    make_shard_set(tmp_path, train=train, val=[1])
    crops = 2
    total = sum(train)
    seen = {}  # (epoch, slot) -> Counter of keys
    for rank in range(world_size):
        s = stream(
            tmp_path,
            rank=rank,
            world_size=world_size,
            num_workers=workers,
            crops_per_chunk=crops,
            shuffle_block=3,
        )
        for worker in range(max(1, workers)):
            for batch in itertools.islice(s.iter_worker(worker, workers), 4 * total):
                for key, epoch in zip(batch["keys"], batch["epochs"], strict=True):
                    seen.setdefault((epoch, (rank, worker)), Counter())[key] += 1
    for epoch in (0, 1):
        slots = [c for (e, _), c in seen.items() if e == epoch]
        union = Counter()
        for c in slots:
            assert set(c.values()) == {crops}  # every chunk of the slot gives `crops` crops
            assert not set(union) & set(c)  # no chunk in two slots within an epoch
            union.update(c)
        assert set(union) == train_keys(tmp_path)  # and together they cover the split


def test_every_slot_keeps_streaming_with_uneven_shards(uneven):
    start = time.monotonic()
    for rank in range(2):
        s = stream(uneven, rank=rank, world_size=2, num_workers=3)
        for worker in range(3):
            batches = take(s.iter_worker(worker, 3), 60)
            assert len(batches) == 60
            epochs = [e for b in batches for e in b["epochs"]]
            assert epochs == sorted(epochs) and epochs[-1] > epochs[0]
    assert time.monotonic() - start < 30


def test_dataloader_takes_batches_round_robin_from_workers(uneven):
    loader = make_train_loader(
        uneven,
        batch_size=B,
        segment_samples=T,
        seed=3,
        rank=1,
        world_size=2,
        num_workers=2,
        start_step=0,
    )
    got = take(iter(loader), 6)
    s = stream(uneven, seed=3, rank=1, world_size=2, num_workers=2)
    w0, w1 = take(s.iter_worker(0, 2), 3), take(s.iter_worker(1, 2), 3)
    assert_same(got, [w0[0], w1[0], w0[1], w1[1], w0[2], w1[2]])


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_resumed_stream_continues_the_uninterrupted_one(uneven, workers):
    def loader(rank, start):
        return make_train_loader(
            uneven,
            batch_size=B,
            segment_samples=T,
            seed=7,
            rank=rank,
            world_size=2,
            num_workers=workers,
            start_step=start,
            crops_per_chunk=3,
            shuffle_block=2,
            interleave=2,
        )

    for rank in (0, 1):
        full = take(iter(loader(rank, 0)), 30)
        assert max(full[-1]["epochs"]) >= 2  # the span crosses epoch boundaries
        for start in (5, 17):
            assert_same(take(iter(loader(rank, start)), 8), full[start : start + 8])


def test_zero_and_one_worker_give_the_same_stream(uneven):
    a = take(stream(uneven, world_size=2, rank=1).iter_worker(0, 0), 8)
    b = take(stream(uneven, world_size=2, rank=1).iter_worker(0, 1), 8)
    assert_same(a, b)


def test_resume_skips_whole_shards_without_opening_them(tmp_path):
    make_shard_set(tmp_path / "set", train=[3] * 20, val=[1])
    log = tmp_path / "opens.log"
    base = f"pipe:echo {{name}} >> {log}; cat {tmp_path / 'set'}/{{name}}"
    kw = dict(base=base, shuffle_block=4, interleave=2)
    full = take(iter(stream(tmp_path / "set", **kw)), 40)
    assert len(log.read_text().split()) > 20  # the uninterrupted run opened every shard
    log.unlink()
    resumed = take(iter(stream(tmp_path / "set", start_step=37, **kw)), 1)
    assert_same(resumed, full[37:38])
    # 4 crops = one shuffle block, which spans at most 2 interleave groups of 2 shards
    assert len(log.read_text().split()) <= 4


def test_crops_from_several_chunks_are_mixed_in_a_batch(uneven):
    batches = take(iter(stream(uneven, crops_per_chunk=4, shuffle_block=8)), 20)
    distinct = [len(set(b["keys"])) for b in batches]
    assert np.mean(distinct) > 2.0  # not 4 crops of one chunk per batch


def test_partial_decode_equals_full_decode():
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 40000).astype(np.float32)
    data = flac_bytes(audio, SR)
    assert flac_streaminfo(data) == (SR, 1, 40000)
    full = FlacChunk("k", "mem", data, SR)
    ref = full.decode_all()
    offsets = [0, 1, 4095, 4096, 9000, 30000, 39999]  # spans merged, separate, clipped
    for prepared in (False, True):
        chunk = FlacChunk("k", "mem", data, SR)
        if prepared:
            chunk.prepare(offsets, T)
        for offset in offsets:
            out = np.zeros(T, np.float32)
            n = chunk.read(offset, T, out)
            assert n == min(T, 40000 - offset)
            np.testing.assert_array_equal(out[:n], ref[offset : offset + n])


def test_validation_is_complete_ordered_and_whole(uneven):
    items = list(iter_validation(uneven))
    keys = [it.key for it in items]
    assert keys == ["vals0-c00000", "vals0-c00001", "vals1-c00000", "vals1-c00001", "vals1-c00002"]
    assert [it.key for it in iter_validation(uneven)] == keys
    for it in items:
        assert it.audio.dtype == torch.float32 and it.audio.ndim == 2 and it.audio.shape[0] == 1
        np.testing.assert_array_equal(it.audio[0].numpy(), expected_chunk(it.key))
        assert it.meta["source"].startswith("val")
    assert [it.key for it in iter_validation(uneven, max_items=3)] == keys[:3]
    assert [it.key for it in iter_validation(uneven, max_seconds=0.6)] == keys[:2]


def test_pipe_urls_read_the_same_as_paths(uneven):
    plain = take(iter(stream(uneven, crops_per_chunk=2)), 8)
    for base in (f"pipe:cat {uneven}", f"pipe:cat {uneven}/{{name}}"):
        assert_same(take(iter(stream(uneven, crops_per_chunk=2, base=base)), 8), plain)
        val = [(v.key, v.audio) for v in iter_validation(uneven, base=base)]
        ref = [(v.key, v.audio) for v in iter_validation(uneven)]
        assert [k for k, _ in val] == [k for k, _ in ref]
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(val, ref, strict=True))


def test_bad_arguments_are_refused_by_name(uneven, tmp_path):
    kw = dict(batch_size=B, segment_samples=T, seed=0, num_workers=0)
    with pytest.raises(ValueError, match="longer than every chunk"):
        make_train_loader(uneven, **{**kw, "segment_samples": 4001})
    with pytest.raises(ValueError, match="16000 Hz"):
        make_train_loader(uneven, sample_rate=16000, **kw)
    with pytest.raises(ValueError, match="rank 2"):
        make_train_loader(uneven, rank=2, world_size=2, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        make_train_loader(uneven, **{**kw, "batch_size": 0})
    with pytest.raises(FileNotFoundError, match="no manifest"):
        make_train_loader(tmp_path / "nowhere", **kw)
    make_shard_set(tmp_path / "empty", train=[], val=[])
    with pytest.raises(ValueError, match="train split is empty"):
        make_train_loader(tmp_path / "empty", **kw)
    with pytest.raises(ValueError, match="val split is empty"):
        next(iter_validation(tmp_path / "empty"))


def test_bad_shards_are_reported_by_file_and_key(tmp_path):
    folder = tmp_path / "rate"
    make_shard_set(folder, train=[6], val=[2], flac_rate={"trains0-c00002": 16000})
    with pytest.raises(ValueError, match="trains0-c00002 is 16000 Hz"):
        take(iter(stream(folder)), 3)

    folder = tmp_path / "short"
    make_shard_set(folder, train=[5], val=[2])
    manifest = load_manifest(folder)
    manifest.splits["train"].shards[0].samples = 6
    manifest.splits["val"].shards[0].samples = 3
    manifest.save(folder)
    with pytest.raises(ValueError, match="train-000000.tar: the tar ends before"):
        take(iter(stream(folder)), 3)
    with pytest.raises(ValueError, match="val-000000.tar: holds 2 samples"):
        list(iter_validation(folder))

    folder = tmp_path / "corrupt"
    make_shard_set(folder, train=[2], val=[1])
    (folder / "train-000000.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ValueError, match="train-000000.tar"):
        take(iter(stream(folder)), 1)
