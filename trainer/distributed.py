"""The few places where ranks must agree on something the model itself changes."""

from __future__ import annotations

import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch import nn


@torch.no_grad()
def sync_codebooks(accelerator: Accelerator, codec: nn.Module) -> None:
    """Broadcast rank 0's codebooks and usage statistics to every rank.

    Dead-code replacement draws random encoder residuals, which differ per rank; rank 0
    replaces and this one helper makes every rank hold the same codebooks again (DDP only
    synchronises gradients, so diverged parameters would otherwise stay diverged).
    ``codec`` is the unwrapped model.
    """
    if accelerator.num_processes == 1 or not dist.is_initialized():
        return
    for t in codec.quantizer.sync_buffers():
        dist.broadcast(t.data, src=0)


def replace_dead_codes(accelerator: Accelerator, codec: nn.Module, seed: int) -> torch.Tensor:
    """Rank 0 re-initialises dead codebook entries, then all ranks sync. Returns the number
    replaced per codebook (as rank 0 saw it; zeros elsewhere)."""
    replaced = torch.zeros(codec.quantizer.n_codebooks, dtype=torch.long)
    if accelerator.is_main_process:
        # A dedicated generator: the replacement draws must not shift the global RNG stream
        # (that would make resume-equality depend on whether a replacement happened).
        gen = torch.Generator().manual_seed(seed)
        replaced = codec.quantizer.replace_dead_codes(generator=gen)
    sync_codebooks(accelerator, codec)
    return replaced
