"""The training data as the loop sees it: each step's micro-batches on the device.

Owns the loader and what happens per fetched batch: the level check (guard), the data
position kept in the loop state (``state.data_batches``, where a resumed run restarts its
stream), the debug log of which crops each rank trained on, and the count of samples the
reader had to skip as undecodable (per DataLoader worker, as each reports its own total).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

import torch
from accelerate import Accelerator

from shards.reader import make_train_loader
from trainer.alarms import Guard
from trainer.checkpoint import TrainState
from trainer.config import ExperimentConfig
from trainer.stopping import ignore_signals


class MicroBatches:
    """``batches.step()`` yields one step's micro-batches ``[B, 1, T]`` on the device,
    lazily (one in flight at a time)."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        acc: Accelerator,
        state: TrainState,
        guard: Guard,
        stop_signals,
    ) -> None:
        self.cfg, self.acc, self.state, self.guard = cfg, acc, state, guard
        b = cfg.data
        loader = make_train_loader(
            b.shards,
            batch_size=b.batch_size,
            segment_samples=b.segment_samples,
            seed=b.seed,
            rank=acc.process_index,
            world_size=acc.num_processes,
            num_workers=b.num_workers,
            start_step=state.data_batches,
            base=b.shard_base,
            crops_per_chunk=b.crops_per_chunk,
            sample_rate=cfg.codec.sample_rate,
            max_bad_fraction=b.max_bad_sample_fraction,
            pin_memory=acc.device.type == "cuda",
            # the stop signals are the main process's to act on (trainer/stopping.py)
            worker_init_fn=functools.partial(ignore_signals, stop_signals),
        )
        # DataLoader draws its base seed from the global RNG when the iterator is created;
        # fork so that draw does not shift the stream a resumed run restored from its
        # checkpoint.
        with torch.random.fork_rng(devices=[]):
            self._it = iter(loader)
        self._skipped: dict[int, int] = {}  # DataLoader worker -> undecodable samples skipped
        self._keys_log = None
        if b.log_keys:  # debug: which crops this rank trained on (tests check disjoint ranks)
            run_dir = cfg.run.run_dir
            run_dir.mkdir(parents=True, exist_ok=True)
            path = run_dir / f"data_keys_rank{acc.process_index}.jsonl"
            self._keys_log = open(path, "a")  # noqa: SIM115 - closed by close()

    def step(self) -> Iterator[torch.Tensor]:
        """The micro-batches of the step after ``state.step``."""
        check_level = self.acc.is_main_process and self.cfg.guard.enabled
        while True:
            batch = next(self._it)
            if check_level:
                self.guard.check_batch_level(self.state.step + 1, batch["audio"])  # CPU: no sync
            self.state.data_batches += 1
            self._skipped[batch["worker"]] = batch["skipped_samples"]
            if self._keys_log is not None:
                row = {k: batch[k] for k in ("keys", "offsets", "epochs")}
                self._keys_log.write(json.dumps({"step": self.state.step + 1, **row}) + "\n")
            yield batch["audio"].to(self.acc.device, non_blocking=True)

    @property
    def skipped_samples(self) -> int:
        """Undecodable samples this rank's reader skipped so far (this session)."""
        return sum(self._skipped.values())

    def close(self) -> None:
        if self._keys_log is not None:
            self._keys_log.close()
            self._keys_log = None
