"""Read a shard set back: random fixed-length crops for training, whole chunks for validation.

Training (:class:`TrainStream`, :func:`make_train_loader`)
    An endless, epoch-based stream of batches ``dict(audio=float32 [B, 1, T], lengths,
    keys, offsets, epochs)`` for one rank, built inside each DataLoader worker (the loader
    uses ``batch_size=None``). Who reads which samples, in which order and where each crop
    starts is a pure function of (manifest counts, seed, rank, world_size, worker,
    num_workers); see :mod:`shards.reader_plan` for the scheme and why it neither duplicates
    work nor hangs with unequal shards. ``start_step`` (batches this rank already consumed)
    makes a resumed run continue the exact stream of the uninterrupted one.

Short chunks are padded, not skipped
    A chunk shorter than the segment (the last chunk of a recording can be 1 s) gives a crop
    that holds the whole chunk at offset 0 followed by zeros; ``lengths[i]`` says how many
    samples of row ``i`` are real, so a loss can mask the rest. Padding rather than skipping
    means nothing is silently lost, and, more importantly, every chunk yields exactly
    ``crops_per_chunk`` crops, so how many batches an epoch holds is known from the
    manifest alone: that is what lets a resume skip whole shards without opening them.

Damaged samples are skipped, up to a share
    A sample whose FLAC does not decode, or the rest of a tar that is corrupt or cut short,
    is skipped, logged once with its shard and key, and counted (``skipped_samples`` in each
    batch); the stream stops with :class:`shards.reader_io.TooManyBadSamples` once a reader
    has met more than ``max_bad_fraction`` of the split's samples. So a resumed run does not
    die at the same sample again. A skipped chunk's crops are taken from the next good chunk
    of the same shuffle block (offsets drawn from the same random numbers), so every chunk
    still yields ``crops_per_chunk`` crops and the stream stays a function of its arguments
    (the resume guarantee); the shard set's own damage is what ``telucodec-audit`` reports.

Validation (:func:`iter_validation`)
    Every chunk of the ``val`` split, whole, in the same order every time (shards in manifest
    order, samples in tar order), optionally bounded by a count or a number of seconds.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shards.manifest import MANIFEST_NAME, Manifest, ManifestError, load_manifest
from shards.reader_io import (
    DEFAULT_MAX_BAD_FRACTION,
    BadSample,
    BadSampleLog,
    FlacChunk,
    Hole,
    iter_tar_samples,
    stand_in,
)
from shards.reader_plan import (
    MAX_EMPTY_EPOCHS,
    EpochPlanner,
    VirtualShard,
    block_crop_order,
    logical_worker,
    worker_batches_before,
)
from shards.tarwalk import TarFormatError
from telucodec.errors import ArgumentError


class TrainStream(IterableDataset):
    """Endless stream of training batches for one rank; each DataLoader worker makes whole
    batches (use the loader with ``batch_size=None``, as :func:`make_train_loader` does).

    urls: one per tar, anything webdataset's ``gopen`` opens (path, ``file:``, ``pipe:cmd``,
        http). samples_per_shard: samples in each tar, from the manifest (used to plan and
        to skip without reading; a tar holding fewer samples is an error).
    batch_size: crops per batch (B). segment_samples: crop length T in samples.
    seed: non-negative int, the same on every rank.
    rank, world_size: this process and the number of processes (plain ints).
    num_workers: the DataLoader's ``num_workers`` (0 = load in the main process). The real
        value is read from ``get_worker_info()``; a mismatch only warns.
    start_step: batches this rank already consumed (a resume; count micro-batches under
        gradient accumulation: every batch drawn from the loader). The stream then yields what
        the uninterrupted stream yields from batch ``start_step`` on, provided world_size,
        num_workers, batch_size, crops_per_chunk, shuffle_block, interleave and seed are
        unchanged (with any of them changed it is a different, equally valid stream).
    crops_per_chunk: crops drawn from each decoded chunk per epoch (random offsets);
        more crops per chunk means less decoding per delivered second.
    shuffle_block: chunks whose crops are shuffled together (memory: this many compressed
        chunks, plus the decoded ones with crops still to come).
    interleave: virtual shards a worker reads at once (their samples are interleaved).
    sample_rate: if given, every decoded chunk must have this rate (error names the key).
    max_bad_fraction: share of the split's samples that may be undecodable before the stream
        stops (see "Damaged samples" in the module docstring; 0 = stop at the first).

    Each batch is ``dict(audio=FloatTensor[B, 1, T], lengths=list[int] (real samples per
    row; the rest is zero padding; ``T`` unless the chunk was shorter), keys=list[str]
    (sample keys), offsets=list[int] (crop start in the chunk, samples), epochs=list[int]
    (epoch of the slot's stream each crop belongs to), skipped_samples=int (distinct bad
    samples this DataLoader worker has met so far), worker=int (its id; 0 without workers))``. A loss mask, when wanted, is
    ``torch.arange(T) < torch.tensor(lengths)[:, None]``.

    Iterate the stream once per run: a new iterator (e.g. a new ``iter(loader)``, also with
    persistent workers) starts again at ``start_step``. Resume relies on the DataLoader taking
    batch ``j`` from worker ``j % num_workers``, which holds with ``in_order=True`` (the
    default) because the stream never ends.

    Cost: per chunk, one tar header walk and one FLAC decode pass over the union of its
    crops' spans (seeking over gaps); so ``crops_per_chunk > 1`` delivers more audio per
    decoded second (see ``benchmarks/bench_reader.py``).
    """

    def __init__(
        self,
        urls: list[str],
        samples_per_shard: list[int],
        *,
        batch_size: int,
        segment_samples: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        start_step: int = 0,
        crops_per_chunk: int = 1,
        shuffle_block: int = 64,
        interleave: int = 4,
        sample_rate: int | None = None,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    ):
        super().__init__()
        if not 0.0 <= max_bad_fraction < 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1), got {max_bad_fraction!r}")
        if len(urls) != len(samples_per_shard):
            raise ValueError(
                f"got {len(urls)} urls but {len(samples_per_shard)} samples_per_shard entries"
            )
        if not urls or sum(samples_per_shard) <= 0:
            raise ValueError("no training samples: the shard list is empty or every shard is")
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("segment_samples", segment_samples, 1),
            ("seed", seed, 0),
            ("rank", rank, 0),
            ("world_size", world_size, 1),
            ("num_workers", num_workers, 0),
            ("start_step", start_step, 0),
            ("crops_per_chunk", crops_per_chunk, 1),
            ("shuffle_block", shuffle_block, 1),
            ("interleave", interleave, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if rank >= world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1} (world_size)")
        self.urls = [str(u) for u in urls]
        self.samples_per_shard = [int(n) for n in samples_per_shard]
        self.batch_size = batch_size
        self.segment_samples = segment_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.start_step = start_step
        self.crops_per_chunk = crops_per_chunk
        self.shuffle_block = shuffle_block
        self.interleave = interleave
        self.sample_rate = sample_rate
        self.max_bad_fraction = max_bad_fraction

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (0, 0) if info is None else (info.id, info.num_workers)
        if workers != self.num_workers:
            warnings.warn(
                f"TrainStream was told num_workers={self.num_workers} but runs with "
                f"{workers} DataLoader workers; planning for {workers}",
                stacklevel=2,
            )
        return self.iter_worker(worker, workers)

    def iter_worker(self, worker: int, num_workers: int) -> Iterator[dict]:
        """The batches DataLoader worker ``worker`` of ``num_workers`` produces (0 workers:
        the main process). ``__iter__`` calls this; tests call it to play every worker."""
        k = max(1, num_workers)
        if not 0 <= worker < k:
            raise ValueError(f"worker {worker} is outside 0..{k - 1}")
        role = logical_worker(worker, k, self.start_step)
        planner = EpochPlanner(
            self.samples_per_shard, self.world_size * k, self.seed, self.interleave
        )
        slot = self.rank * k + role
        first = worker_batches_before(self.start_step, role, k) * self.batch_size
        bad = BadSampleLog(sum(self.samples_per_shard), self.max_bad_fraction)
        return self._batches(self._crops(planner, slot, first, bad), bad, worker)

    def _batches(
        self, crops: Iterator[tuple[FlacChunk, int, int]], bad: BadSampleLog, worker: int
    ) -> Iterator[dict]:
        b, t = self.batch_size, self.segment_samples
        while True:
            audio = np.zeros((b, 1, t), dtype=np.float32)
            keys, offsets, lengths, epochs = [], [], [], []
            for row in range(b):
                chunk, offset, epoch = next(crops)
                lengths.append(chunk.read(offset, t, audio[row, 0]))
                keys.append(chunk.key)
                offsets.append(offset)
                epochs.append(epoch)
            # Only the audio is a tensor: a DataLoader worker hands every tensor over through
            # its own shared-memory segment (~0.2 ms each, measured), lists ride in the pickle.
            yield {
                "audio": torch.from_numpy(audio),
                "lengths": lengths,
                "keys": keys,
                "offsets": offsets,
                "epochs": epochs,
                "skipped_samples": bad.count,
                "worker": worker,
            }

    def _crops(
        self, planner: EpochPlanner, slot: int, first: int, bad: BadSampleLog
    ) -> Iterator[tuple[FlacChunk, int, int]]:
        """(chunk, offset, epoch) for each crop of the slot's stream from crop ``first`` on."""
        c, s, t = self.crops_per_chunk, self.shuffle_block, self.segment_samples
        epoch, pos = planner.locate(slot, first, c)
        empty = 0
        while True:
            members, labels = planner.read_order(epoch, slot)
            n = len(labels)
            empty = empty + 1 if n == 0 else 0
            if empty > MAX_EMPTY_EPOCHS:
                raise RuntimeError(f"slot {slot} got no samples in {empty} consecutive epochs")
            block = pos // (s * c)
            skip = pos % (s * c)
            with contextlib.closing(self._read_samples(members, labels, block * s)) as samples:
                for b in range(block, math.ceil(n / s)):
                    m = min(s, n - b * s)
                    chunks: list[FlacChunk | Hole] = [next(samples) for _ in range(m)]
                    for ch in chunks:
                        if isinstance(ch, Hole):
                            bad.record(ch)
                    order, u = block_crop_order(self.seed, planner.slots, slot, epoch, b, m, c)
                    order = order[skip:]
                    skip = 0
                    frames = np.array([getattr(ch, "frames", 1) for ch in chunks])
                    # offset = floor(u * (frames - T + 1)); chunks no longer than T start at 0
                    offsets = (u * np.maximum(frames - t + 1, 1)[:, None]).astype(np.int64)
                    order = order.tolist()
                    need: list[list[int]] = [[] for _ in range(m)]  # offsets still to crop
                    for i, k in order:
                        need[i].append(int(offsets[i, k]))
                    left = [len(offs) for offs in need]
                    for i, k in order:
                        chunk = chunks[i]
                        first_crop = left[i] == len(need[i])
                        left[i] -= 1
                        if first_crop and isinstance(chunk, FlacChunk):  # decode once
                            try:
                                chunk.prepare(need[i], t)
                            except BadSample as e:
                                chunk = chunks[i] = Hole(e.url, -1, e.key, e.reason)
                                bad.record(chunk)
                        if isinstance(chunk, FlacChunk):
                            yield chunk, int(offsets[i, k]), epoch
                            if left[i] == 0:
                                chunk.release()  # free its decoded audio
                            continue
                        sub = stand_in(chunks, i, bad)
                        if sub is not None:  # same random draw, on the stand-in's length
                            yield sub, int(u[i, k] * max(sub.frames - t + 1, 1)), epoch
            epoch += 1
            pos = 0

    def _read_samples(
        self, members: list[VirtualShard], labels: np.ndarray, start: int
    ) -> Iterator[FlacChunk]:
        """The slot's samples in read order from read position ``start``: earlier samples of
        each member are skipped (whole members without opening them)."""
        skips = np.bincount(labels[:start], minlength=len(members))
        left = np.array([v.samples for v in members]) - skips
        open_ = {}
        try:
            for p in range(start, len(labels)):
                m = int(labels[p])
                if m not in open_:
                    open_[m] = self._read_virtual(members[m], int(skips[m]))
                yield next(open_[m])
                left[m] -= 1
                if left[m] == 0:
                    open_.pop(m).close()
        finally:
            for it in open_.values():
                it.close()

    def _read_virtual(self, vs: VirtualShard, skip: int) -> Iterator[FlacChunk | Hole]:
        """The virtual shard's samples from its ``skip``-th on; a :class:`Hole` for each
        one that cannot be had (undecodable, or lost to a corrupt or truncated tar)."""
        url = self.urls[vs.shard]
        first = vs.tar_index(skip)
        k = skip  # the virtual shard's sample to come

        def want(j: int) -> bool:
            return j >= first and j % vs.parts == vs.part

        try:
            with contextlib.closing(iter_tar_samples(url, want, suffixes=("flac",))) as it:
                for index, key, files in it:
                    k += 1
                    if "flac" not in files:
                        yield Hole(url, index, key, "has no .flac member")
                        continue
                    try:
                        yield FlacChunk(key, url, files["flac"], self.sample_rate)
                    except BadSample as e:
                        yield Hole(url, index, key, e.reason)
            reason = (
                f"the tar ends before the {self.samples_per_shard[vs.shard]} samples the "
                "manifest lists for it (truncated shard or wrong manifest?)"
            )
        except TarFormatError as e:  # the rest of this tar cannot be reached
            reason = str(e).removeprefix(f"{url}: ")
        while True:  # the reader asks for no more than the plan holds
            yield Hole(url, vs.tar_index(k), None, reason)
            k += 1


def resolve_shards(
    manifest_or_dir: Manifest | str | os.PathLike,
    split: str,
    base: str | os.PathLike | None = None,
) -> tuple[Manifest, list[str]]:
    """The manifest and the URLs of ``split``'s shards.

    manifest_or_dir: a shard folder, its ``manifest.json``, or a loaded :class:`Manifest`.
    base: where the tars are: a folder, a URL prefix (``https://host/set``) or a template
        holding ``{name}`` (``pipe:aws s3 cp s3://bucket/set/{name} -``) for commands that
        need text after the name. Defaults to the manifest's folder.
    """
    if isinstance(manifest_or_dir, Manifest):
        manifest, folder, source = manifest_or_dir, None, "manifest"
    else:
        path = Path(manifest_or_dir)
        manifest = load_manifest(path)
        folder = path if path.is_dir() else path.parent
        source = str(path / MANIFEST_NAME if path.is_dir() else path)
    if split not in manifest.splits:
        raise ManifestError(f"{source}: no {split!r} split (it has {list(manifest.splits)})")
    if base is None:
        if folder is None:
            raise ValueError("base is required when a Manifest object is passed")
        base = folder
    return manifest, manifest.shard_urls(split, base, source)


def make_train_loader(
    manifest_or_dir: Manifest | str | os.PathLike,
    *,
    batch_size: int,
    segment_samples: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 2,
    start_step: int = 0,
    base: str | os.PathLike | None = None,
    crops_per_chunk: int = 1,
    shuffle_block: int = 64,
    interleave: int = 4,
    sample_rate: int | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
    persistent_workers: bool = False,
    worker_init_fn: Callable[[int], None] | None = None,
) -> DataLoader:
    """A DataLoader over the ``train`` split yielding :class:`TrainStream` batches forever.

    sample_rate: the rate the model expects (Hz); an error if the shard set differs.
    worker_init_fn: run in each worker process at its start (the trainer uses it to leave
    stop signals to the main process).
    Other arguments: see :class:`TrainStream` and :func:`resolve_shards`. Segments longer
    than the manifest's ``chunk_seconds`` are refused (every crop would be padding).
    """
    manifest, urls = resolve_shards(manifest_or_dir, "train", base)
    split = manifest.splits["train"]
    if split.samples == 0:
        raise ValueError(f"{manifest_or_dir}: the train split is empty")
    # the config asked for something the shard set cannot give: the user's to fix
    if sample_rate is not None and sample_rate != manifest.sample_rate:
        raise ArgumentError(
            f"sample_rate {sample_rate} Hz was asked for but the shard set "
            f"{manifest_or_dir} is {manifest.sample_rate} Hz"
        )
    longest = round(manifest.chunk_seconds * manifest.sample_rate)
    if segment_samples > longest:
        raise ArgumentError(
            f"segment_samples {segment_samples} is longer than every chunk of "
            f"{manifest_or_dir} (chunk_seconds {manifest.chunk_seconds} = {longest} samples)"
        )
    stream = TrainStream(
        urls,
        [s.samples for s in split.shards],
        batch_size=batch_size,
        segment_samples=segment_samples,
        seed=seed,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        start_step=start_step,
        crops_per_chunk=crops_per_chunk,
        shuffle_block=shuffle_block,
        interleave=interleave,
        sample_rate=manifest.sample_rate,
        max_bad_fraction=max_bad_fraction,
    )
    extra = {}
    if num_workers > 0:
        extra = {
            "prefetch_factor": prefetch_factor,
            "persistent_workers": persistent_workers,
            "worker_init_fn": worker_init_fn,
        }
    return DataLoader(
        stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **extra
    )


class ValItem(NamedTuple):
    """One whole chunk of a split (:func:`iter_validation`, :func:`iter_chunks`): its key, the
    audio (float32 [1, n] at the manifest's sample rate) and its metadata (the sample's JSON,
    ``{}`` if it has none)."""

    key: str
    audio: torch.Tensor
    meta: dict


def iter_validation(
    manifest_or_dir: Manifest | str | os.PathLike,
    *,
    base: str | os.PathLike | None = None,
    max_items: int | None = None,
    max_seconds: float | None = None,
) -> Iterator[ValItem]:
    """Every chunk of the ``val`` split, whole, in the same order on every call and rank
    (see :func:`iter_chunks`)."""
    return iter_chunks(
        manifest_or_dir, "val", base=base, max_items=max_items, max_seconds=max_seconds
    )


def iter_chunks(
    manifest_or_dir: Manifest | str | os.PathLike,
    split: str,
    *,
    base: str | os.PathLike | None = None,
    max_items: int | None = None,
    max_seconds: float | None = None,
) -> Iterator[ValItem]:
    """Every chunk of ``split``, whole, in the same order on every call and rank.

    Order: shards in manifest order, samples in tar order. Stops after ``max_items`` chunks,
    or once the chunks yielded reach ``max_seconds`` of audio (the chunk that reaches it is
    included), whichever comes first; the bounded set is always a prefix of the full one.
    """
    manifest, urls = resolve_shards(manifest_or_dir, split, base)
    shards = manifest.splits[split].shards
    if not shards or manifest.splits[split].samples == 0:
        raise ValueError(f"{manifest_or_dir}: the {split} split is empty")
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be >= 1 or None, got {max_items}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds}")
    items, seconds = 0, 0.0
    for url, info in zip(urls, shards, strict=True):
        count = 0
        with contextlib.closing(iter_tar_samples(url)) as it:
            for _, key, files in it:
                if "flac" not in files:
                    raise ValueError(f"{url}: sample {key} has no .flac member")
                audio = FlacChunk(key, url, files["flac"], manifest.sample_rate).decode_all()
                meta = json.loads(files["json"]) if "json" in files else {}
                yield ValItem(key, torch.from_numpy(audio).unsqueeze(0), meta)
                count += 1
                items += 1
                seconds += len(audio) / manifest.sample_rate
                if (max_items is not None and items >= max_items) or (
                    max_seconds is not None and seconds >= max_seconds
                ):
                    return
        if count != info.samples:
            raise ValueError(f"{url}: holds {count} samples but the manifest lists {info.samples}")
