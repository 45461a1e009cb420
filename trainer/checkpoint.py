"""Crash-safe checkpoints on top of ``accelerator.save_state``.

Layout under ``<run_dir>/checkpoints``::

    step_00001000/          a complete checkpoint (Accelerate state + config.yaml + COMPLETE)
    step_00002000.partial/  a save in progress (or one a crash interrupted): never loaded
    latest                  text file naming the newest complete checkpoint
    best                    text file naming the checkpoint with the best validation mel distance

A save is written into ``*.partial`` by every rank, then rank 0 renames it to its final name
and only then moves the ``latest`` pointer (each step an atomic ``os.replace``). A crash at
any point leaves ``latest`` on the previous complete checkpoint. Resume never trusts a
directory without its ``COMPLETE`` marker.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from accelerate import Accelerator

COMPLETE = "COMPLETE"
PARTIAL_SUFFIX = ".partial"


@dataclass
class TrainState:
    """Everything about the loop's position that is not a tensor, saved in each checkpoint.

    step: optimizer steps done. samples_seen: audio crops consumed by all ranks together.
    data_batches: micro-batches each rank has drawn from its data stream (the stream's
    resume position). wall_seconds / device_seconds: the run's time so far over all its
    sessions, up to this save (device_seconds counts every process), for the cost meter.
    """

    step: int = 0
    samples_seen: int = 0
    data_batches: int = 0
    best_val_mel: float = math.inf
    best_step: int = -1
    wandb_run_id: str | None = None
    world_size: int = 1
    wall_seconds: float = 0.0
    device_seconds: float = 0.0

    # Accelerate's register_for_checkpointing protocol
    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            if hasattr(self, k):
                setattr(self, k, v)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def is_complete(path: Path) -> bool:
    return path.is_dir() and (path / COMPLETE).exists()


def find_latest(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (``latest`` pointer first, then a scan
    in case the pointer is missing or points at something removed)."""
    root = Path(root)
    pointer = root / "latest"
    if pointer.exists():
        candidate = root / pointer.read_text().strip()
        if is_complete(candidate):
            return candidate
    complete = sorted(p for p in root.glob("step_*") if is_complete(p))
    return complete[-1] if complete else None


def read_checkpoint_info(path: str | Path) -> dict:
    return json.loads((Path(path) / COMPLETE).read_text())


class CheckpointManager:
    """Saves, prunes (keep the last K plus the best) and finds checkpoints. Every rank calls
    :meth:`save` (DeepSpeed writes per-rank shards); only rank 0 renames and prunes."""

    def __init__(self, accelerator: Accelerator, root: str | Path, keep_last: int) -> None:
        self.accelerator = accelerator
        self.root = Path(root)
        self.keep_last = keep_last

    def save(self, state: TrainState, config_yaml: str, is_best: bool = False) -> Path:
        acc = self.accelerator
        final = self.root / step_dir_name(state.step)
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        if acc.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)  # debris of an interrupted save
        acc.wait_for_everyone()
        acc.save_state(str(partial))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (partial / "config.yaml").write_text(config_yaml)
            info = {
                "step": state.step,
                "samples_seen": state.samples_seen,
                "wall_seconds": round(state.wall_seconds, 3),
                "device_seconds": round(state.device_seconds, 3),
            }
            (partial / COMPLETE).write_text(json.dumps(info))
            if final.exists():  # re-saving the same step (e.g. final save after a periodic one)
                shutil.rmtree(final)
            os.replace(partial, final)
            _write_atomic(self.root / "latest", final.name)
            if is_best:
                _write_atomic(self.root / "best", final.name)
            self._prune()
        acc.wait_for_everyone()
        return final

    def _prune(self) -> None:
        complete = sorted(p for p in self.root.glob("step_*") if is_complete(p))
        keep = {p.name for p in complete[-self.keep_last :]}
        best = self.root / "best"
        if best.exists():
            keep.add(best.read_text().strip())
        for p in complete:
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
