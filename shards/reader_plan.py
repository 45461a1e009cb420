"""Who reads what, and in which order: the arithmetic behind :class:`shards.reader.TrainStream`.

Everything here is a pure function of integers (shard sample counts, seed, epoch, slot): no
file is opened. That is what makes the training stream deterministic and cheap to resume: a
reader slot can work out, from the manifest alone, where its stream stood after any number
of batches and skip straight there.

Vocabulary
    slot      one producer of batches: (rank, DataLoader worker). ``W = world_size *
              num_workers`` slots in all; slot ``s = rank * num_workers + worker``.
    virtual shard
              a subset of one tar: when there are fewer tars than slots, tar ``i`` is split
              into ``R = ceil(W / n_tars)`` parts and part ``r`` keeps the samples whose
              index in the tar satisfies ``index % R == r``. With ``n_tars >= W`` every
              virtual shard is a whole tar (``R = 1``).
    epoch     one pass of every slot over its virtual shards. Epoch ``e`` deals a random
              permutation (seeded by ``(seed, e)``, identical on every rank) of all virtual
              shards to the slots round-robin, so within an epoch no sample is given to two
              slots, and together the slots cover every sample once.
    read order
              a slot reads its virtual shards in groups of ``interleave``; within a group the
              samples of the members are interleaved in a random order (each member keeps
              its tar order, because tars are streams). Samples are then cut into blocks of
              ``shuffle_block`` consecutive samples; all crops of a block are emitted in a
              random order (see :func:`block_crop_order`).

Streams never end: each slot moves on to the next epoch when it finishes one, however many
samples it had. Training is step-based, so no rank can run out of data before another and no
collective can hang. The price is that slots holding small virtual shards cycle through
epochs faster; with many similar-sized shards per slot (the normal case) this is negligible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Distinct stream tags so the permutation, read-order and crop RNGs never share a seed.
_TAG_DEAL = 0x0DEA1
_TAG_ORDER = 0x0DE12
_TAG_CROPS = 0x0C12B
MAX_EMPTY_EPOCHS = 10_000


@dataclass(frozen=True)
class VirtualShard:
    """Part ``part`` of ``parts`` of tar number ``shard``: the tar's samples whose 0-based
    position in the tar is ``== part (mod parts)``; ``samples`` of them."""

    shard: int
    part: int
    parts: int
    samples: int

    def tar_index(self, k: int) -> int:
        """Position in the tar of this virtual shard's ``k``-th sample."""
        return self.part + k * self.parts


def split_count(samples: int, part: int, parts: int) -> int:
    """How many of ``range(samples)`` are ``== part (mod parts)``."""
    return max(0, (samples - part + parts - 1) // parts)


def worker_batches_before(start_step: int, worker: int, num_workers: int) -> int:
    """Batches worker ``worker`` had produced when its rank had consumed ``start_step``.

    torch's DataLoader (``batch_size=None``, ``in_order=True``, streams that never end) takes
    the rank's batch ``j`` from worker ``j % num_workers``: worker ``w`` produced batches
    ``w, w + K, w + 2K, ...``, i.e. ``ceil((start_step - w) / K)`` of the first ``start_step``.
    Batches a worker had prefetched but the trainer never consumed are not counted: the
    resumed worker simply makes them again.
    """
    if start_step <= worker:
        return 0
    return (start_step - worker + num_workers - 1) // num_workers


def logical_worker(physical_worker: int, num_workers: int, start_step: int) -> int:
    """The worker of the uninterrupted run whose stream a resumed worker continues.

    A new DataLoader starts its round-robin at worker 0, but the uninterrupted run would take
    batch ``start_step`` from worker ``start_step % K``. Rotating the roles by ``start_step``
    makes the resumed loader's batch ``j`` the uninterrupted run's batch ``start_step + j``.
    """
    return (physical_worker + start_step) % num_workers


class EpochPlanner:
    """Deals virtual shards to slots, epoch by epoch, from counts and a seed alone.

    samples_per_shard: samples (chunks) in each tar, from the manifest, in manifest order.
    slots: ``W = world_size * num_workers``.
    seed: non-negative int shared by all ranks.
    interleave: virtual shards a slot reads at once (open streams per slot).
    """

    def __init__(self, samples_per_shard: list[int], slots: int, seed: int, interleave: int):
        if not samples_per_shard:
            raise ValueError("samples_per_shard is empty: no shards to read")
        if any(int(n) < 0 for n in samples_per_shard):
            raise ValueError(f"samples_per_shard has a negative count: {samples_per_shard}")
        if sum(samples_per_shard) == 0:
            raise ValueError("every shard is empty (samples_per_shard sums to 0)")
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if interleave < 1:
            raise ValueError(f"interleave must be >= 1, got {interleave}")
        self.samples_per_shard = [int(n) for n in samples_per_shard]
        self.slots = slots
        self.seed = seed
        self.interleave = interleave
        n = len(self.samples_per_shard)
        self.parts = max(1, math.ceil(slots / n))
        self.virtual = [
            VirtualShard(i, r, self.parts, split_count(c, r, self.parts))
            for i, c in enumerate(self.samples_per_shard)
            for r in range(self.parts)
        ]
        self._virtual_counts = np.array([v.samples for v in self.virtual], dtype=np.int64)

    def _deal(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _TAG_DEAL, epoch])
        return rng.permutation(len(self.virtual))

    def slot_shards(self, epoch: int, slot: int) -> list[VirtualShard]:
        """The virtual shards slot ``slot`` reads in epoch ``epoch``, in reading order."""
        self._check_slot(slot)
        return [self.virtual[i] for i in self._deal(epoch)[slot :: self.slots]]

    def slot_samples(self, epoch: int, slot: int) -> int:
        """Samples slot ``slot`` reads in epoch ``epoch`` (may be 0 for tiny shard sets)."""
        self._check_slot(slot)
        return int(self._virtual_counts[self._deal(epoch)[slot :: self.slots]].sum())

    def read_order(self, epoch: int, slot: int) -> tuple[list[VirtualShard], np.ndarray]:
        """The slot's virtual shards and, for each sample it reads this epoch, which of them
        it comes from: ``labels[p]`` is the member index of read position ``p``.

        Members are taken in groups of ``interleave``; inside a group the labels are a
        uniformly random interleaving, so the members finish at about the same time and a
        slot never holds more than ``interleave`` streams open.
        """
        members = self.slot_shards(epoch, slot)
        rng = np.random.default_rng([self.seed, _TAG_ORDER, self.slots, slot, epoch])
        pieces = []
        for g in range(0, len(members), self.interleave):
            group = members[g : g + self.interleave]
            labels = np.repeat(np.arange(g, g + len(group)), [m.samples for m in group])
            rng.shuffle(labels)
            pieces.append(labels)
        labels = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        return members, labels

    def locate(self, slot: int, crop: int, crops_per_chunk: int) -> tuple[int, int]:
        """(epoch, crop index within that epoch) of the slot's ``crop``-th crop overall.

        Each sample gives exactly ``crops_per_chunk`` crops (short chunks are padded, never
        skipped), so the answer follows from the manifest's counts without reading a file.
        """
        epoch, empty = 0, 0
        while True:
            n = self.slot_samples(epoch, slot) * crops_per_chunk
            empty = empty + 1 if n == 0 else 0
            if empty > MAX_EMPTY_EPOCHS:
                raise RuntimeError(
                    f"slot {slot} of {self.slots} got no samples in {MAX_EMPTY_EPOCHS} "
                    "consecutive epochs; use fewer ranks or DataLoader workers"
                )
            if crop < n:
                return epoch, crop
            crop -= n
            epoch += 1

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} is outside 0..{self.slots - 1}")


def block_crop_order(
    seed: int, slots: int, slot: int, epoch: int, block: int, samples: int, crops_per_chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Emission order and crop positions for one block of ``samples`` chunks.

    Returns ``order`` (int64 [samples * crops_per_chunk, 2]: rows of (chunk index in block,
    crop number)) and ``u`` (float64 [samples, crops_per_chunk] in [0, 1)): crop ``k`` of a
    chunk of ``L`` samples starts at ``floor(u * (L - T + 1))`` for segment length ``T``.
    Drawn before any audio is read, so only the mapping from ``u`` to an offset depends on
    the chunk's length.
    """
    rng = np.random.default_rng([seed, _TAG_CROPS, slots, slot, epoch, block])
    u = rng.random((samples, crops_per_chunk))
    flat = rng.permutation(samples * crops_per_chunk)
    order = np.stack([flat // crops_per_chunk, flat % crops_per_chunk], axis=1)
    return order, u
