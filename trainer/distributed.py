"""The few places where ranks must agree on something the model itself changes."""

from __future__ import annotations

import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch import nn


def _group_formed(accelerator: Accelerator) -> bool:
    return accelerator.num_processes > 1 and dist.is_initialized()


@torch.no_grad()
def sync_codebooks(accelerator: Accelerator, codec: nn.Module) -> None:
    """Broadcast rank 0's codebooks and usage statistics to every rank.

    Dead-code replacement draws random encoder residuals, which differ per rank; rank 0
    replaces and this one helper makes every rank hold the same codebooks again (DDP only
    synchronises gradients, so diverged parameters would otherwise stay diverged).
    ``codec`` is the unwrapped model.
    """
    if not _group_formed(accelerator):
        return
    for t in codec.quantizer.sync_buffers():
        dist.broadcast(t.data, src=0)


@torch.no_grad()
def average_usage(accelerator: Accelerator, codec: nn.Module) -> None:
    """Make every rank's codebook-usage EMA the mean over ranks: the usage of all the data.

    Each rank updates ``usage_ema`` from its own batches only (DDP does not broadcast
    buffers here: ``broadcast_buffers=False`` in :func:`trainer.engine.build_accelerator`,
    else every forward would overwrite all ranks' statistics with rank 0's, 1/N of the
    data). The EMA is linear in its inputs, so the mean of the per-rank EMAs is the EMA of
    the global assignment shares; replacing every rank's buffer by that mean keeps it so.
    Called wherever the statistics are read: before the dead-code decision and at log steps.
    """
    if not _group_formed(accelerator):
        return
    usage = codec.quantizer.usage_ema
    dist.all_reduce(usage.data, op=dist.ReduceOp.SUM)
    usage.data.div_(accelerator.num_processes)


def replace_dead_codes(accelerator: Accelerator, codec: nn.Module, seed: int) -> torch.Tensor:
    """Rank 0 re-initialises the entries that are dead in the usage of all ranks' data, then
    all ranks sync. Returns the number replaced per codebook (as rank 0 saw it; zeros
    elsewhere)."""
    average_usage(accelerator, codec)
    replaced = torch.zeros(codec.quantizer.n_codebooks, dtype=torch.long)
    if accelerator.is_main_process:
        # A dedicated generator: the replacement draws must not shift the global RNG stream
        # (that would make resume-equality depend on whether a replacement happened).
        gen = torch.Generator().manual_seed(seed)
        replaced = codec.quantizer.replace_dead_codes(generator=gen)
    sync_codebooks(accelerator, codec)
    return replaced
