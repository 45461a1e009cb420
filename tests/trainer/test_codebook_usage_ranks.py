"""Dead-code decisions see the codebook usage of every rank's data, not rank 0's alone.

Two real CPU processes (gloo) build the trainer's accelerator and engine on the debug preset,
run two training forwards on different data, and average the usage EMA. The expected value
is computed independently from the codes each rank produced: with DDP broadcasting buffers
(its default), rank 1's first update would be overwritten by rank 0's and the mean would miss
it.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow


def _shares(codes: torch.Tensor, k: int) -> torch.Tensor:
    """``K * share`` of each entry per stage for codes ``[B, n, F]`` -> ``[n, K]``."""
    n = codes.shape[1]
    flat = codes.transpose(0, 1).reshape(n, -1)
    counts = torch.stack([torch.bincount(flat[i], minlength=k) for i in range(n)]).float()
    return counts * (k / flat.shape[1])


def _worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    )
    from trainer.config import load_config
    from trainer.distributed import average_usage
    from trainer.engine import build_accelerator
    from trainer.step import build_step_objects

    cfg = load_config("configs/debug.yaml", ["run.cpu=true", "wandb.enabled=false"])
    acc = build_accelerator(cfg)
    assert acc.num_processes == 2
    eng, _ = build_step_objects(acc, cfg)
    q = eng.codec.quantizer
    d, k = q.usage_decay, q.codebook_size
    expected_local = torch.ones_like(q.usage_ema)
    torch.manual_seed(100 + rank)  # different data on each rank
    for _ in range(2):
        x = 0.1 * torch.randn(2, 1, cfg.data.segment_samples)
        out = eng.gen(x)
        expected_local = d * expected_local + (1 - d) * _shares(out.codes, k)
    mine = q.usage_ema.clone()
    average_usage(acc, eng.codec)
    both = [torch.zeros_like(mine) for _ in range(2)]
    dist.all_gather(both, expected_local)
    result = {
        "local_ok": torch.allclose(mine, expected_local, atol=1e-6),
        "mean_ok": torch.allclose(q.usage_ema, (both[0] + both[1]) / 2, atol=1e-6),
        "ranks_differ": not torch.allclose(both[0], both[1]),
    }
    torch.save(result, f"{folder}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def test_usage_ema_is_the_mean_over_ranks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(port, str(tmp_path)), nprocs=2, start_method="spawn")
    for rank in (0, 1):
        res = torch.load(tmp_path / f"rank{rank}.pt")
        assert res["ranks_differ"]  # the test's data really differ per rank
        assert res["local_ok"], f"rank {rank}: its own updates were overwritten"
        assert res["mean_ok"], f"rank {rank}: usage is not the mean over ranks"
