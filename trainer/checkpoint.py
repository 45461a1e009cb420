"""Crash-safe checkpoints on top of ``accelerator.save_state``.

Layout under ``<run_dir>/checkpoints``::

    step_00001000/          a complete checkpoint (Accelerate state + train_state.json +
                            config.yaml + COMPLETE)
    step_00002000.partial/  a save in progress (or one a crash interrupted): never loaded
    latest                  text file naming the newest complete checkpoint
    best                    text file naming the checkpoint with the best validation mel distance

A save is written into ``*.partial`` by every rank, then rank 0 renames it to its final name
and only then moves the ``latest`` pointer (each step an atomic ``os.replace``). A crash at
any point leaves ``latest`` on the previous complete checkpoint. Resume never trusts a
directory without its ``COMPLETE`` marker.

Checkpoints are shared and downloaded, so loading one must never run code from it. The loop
state is JSON (``train_state.json``), not a pickle; every tensor file (Accelerate's
optimizer, scheduler and RNG files, DeepSpeed's model and optimizer states) is read with
``torch.load(weights_only=True)`` and a short allow-list of plain types
(:func:`weights_only_loads`). A file that would need anything else is refused, naming it.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import json
import math
import os
import pickle
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedType
from accelerate.utils.constants import RNG_STATE_NAME

from telucodec.errors import EnvironmentFault, UserInputError, environment_fault

COMPLETE = "COMPLETE"
PARTIAL_SUFFIX = ".partial"
STATE_FILE = "train_state.json"

# Types a checkpoint's tensor files may reconstruct beyond torch's own weights-only set:
# numpy arrays and dtypes (the numpy RNG state Accelerate saves) and codecs.encode (how
# pickle stores bytes). Plain data, no code.
SAFE_GLOBALS: list[Any] = [
    np._core.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    np.dtypes.UInt32DType,
    codecs.encode,
]


def _deepspeed_safe_globals() -> list[Any]:
    """What DeepSpeed's ZeRO optimizer files hold besides tensors: its loss scaler (plain
    attributes, no ``__setstate__``), a ``fragment_address`` dataclass and the ZeRO stage
    enum. Only when DeepSpeed is in use (it is imported then; importing it costs seconds)."""
    if "deepspeed" not in sys.modules:
        return []
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


class CheckpointError(UserInputError):
    """A checkpoint that cannot be resumed or exported (incomplete, damaged, made for another
    architecture, or holding a file that would run code); the message names the file."""


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)  # best_val_mel may be Infinity (Python's json)

    @classmethod
    def from_json(cls, text: str, source: str) -> TrainState:
        """Parse :meth:`to_json`'s output; anything else is a :class:`CheckpointError`
        naming ``source``. Unknown keys are ignored (a newer writer), missing ones default."""
        try:
            d = json.loads(text)
        except ValueError as e:
            raise CheckpointError(f"{source}: not a JSON loop state ({e})") from e
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: not a JSON loop state (not an object)")
        state = cls()
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v, default = d[f.name], getattr(state, f.name)
            if f.name == "wandb_run_id":
                ok = v is None or isinstance(v, str)
            elif isinstance(default, float):
                ok = isinstance(v, int | float) and not isinstance(v, bool)
                v = float(v) if ok else v
            else:
                ok = isinstance(v, int) and not isinstance(v, bool) and v >= -1
            if not ok:
                raise CheckpointError(f"{source}: field {f.name!r} has an invalid value {v!r}")
            setattr(state, f.name, v)
        return state


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
    try:
        name = pointer.read_text().strip()
    except (OSError, ValueError):  # missing or garbage: the scan below decides
        name = ""
    if name and "/" not in name and name not in (".", ".."):
        candidate = root / name
        if is_complete(candidate):
            return candidate
    complete = sorted(p for p in root.glob("step_*") if is_complete(p))
    return complete[-1] if complete else None


def read_checkpoint_info(path: str | Path) -> dict:
    """The ``COMPLETE`` marker's JSON (step, samples_seen, time so far); a damaged one is a
    :class:`CheckpointError` naming it."""
    marker = Path(path) / COMPLETE
    try:
        info = json.loads(marker.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: not a complete checkpoint (no {COMPLETE} marker)") from e
    except (OSError, ValueError) as e:  # ValueError covers bad UTF-8 and bad JSON
        raise CheckpointError(f"{marker}: damaged checkpoint marker ({e})") from e
    if not isinstance(info, dict) or not isinstance(info.get("step"), int) or info["step"] < 0:
        raise CheckpointError(f"{marker}: damaged checkpoint marker (no step count)")
    return info


# fields whose change alters parameter shapes: a checkpoint cannot be loaded across them
ARCHITECTURE_FIELDS = {
    "codec": (
        "sample_rate", "encoder_dim", "encoder_rates", "latent_dim", "decoder_dim",
        "decoder_rates", "n_codebooks", "codebook_size", "codebook_dim",
    ),
    "discriminator": ("periods", "fft_sizes", "bands", "mpd_channels", "stft_channels"),
}  # fmt: skip


def check_architecture(path: str | Path, config: dict) -> None:
    """Refuse to resume ``path`` under a ``config`` (the resolved config as plain YAML data)
    whose model differs from the checkpoint's, naming the first differing field."""
    saved_path = Path(path) / "config.yaml"
    try:
        saved = yaml.safe_load(saved_path.read_text())
    except FileNotFoundError:
        return  # written before config.yaml was saved: the weights' shapes still decide
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise CheckpointError(f"{saved_path}: unreadable ({e})") from e
    if not isinstance(saved, dict):
        raise CheckpointError(f"{saved_path}: not a config mapping")
    for section, names in ARCHITECTURE_FIELDS.items():
        old, new = saved.get(section) or {}, config.get(section) or {}
        for name in names:
            if name in old and name in new and old[name] != new[name]:
                raise CheckpointError(
                    f"{path}: the checkpoint's {section}.{name} is {old[name]}, the config says "
                    f"{new[name]}; resume with the checkpoint's model or start a new run.name"
                )


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Within this block every ``torch.load`` (Accelerate's, DeepSpeed's) reads with
    ``weights_only=True`` plus :data:`SAFE_GLOBALS`, whatever its caller asked for, and a
    file that would need code to load raises :class:`CheckpointError` naming it.

    Accelerate swallows any error while restoring RNG states, so refusals are also recorded
    and raised when the block ends. ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` covers any loader that
    bound ``torch.load`` before this block.
    """
    real_load = torch.load
    refused: list[str] = []
    allowed = SAFE_GLOBALS + _deepspeed_safe_globals()

    def load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        kwargs.pop("pickle_module", None)
        try:
            with torch.serialization.safe_globals(allowed):
                return real_load(f, *args, **kwargs)
        except pickle.UnpicklingError as e:
            name = os.fspath(f) if isinstance(f, str | os.PathLike) else repr(f)
            refused.append(name)
            raise refusal(name, e) from None

    old_env = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    torch.load = load
    try:
        yield
    finally:
        torch.load = real_load
        if old_env is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old_env
    if refused:
        raise refusal(refused[0], None)


def refusal(name: str, err: Exception | None) -> CheckpointError:
    # torch's message is a page of advice; the line naming what the file wanted is the one
    lines = str(err).strip().splitlines() if err is not None else []
    why = next((x.strip() for x in lines if "GLOBAL" in x or "Unsupported" in x), "")
    return CheckpointError(
        f"{name}: refused: loading it would run code from the file (only tensors and plain "
        f"data are accepted){': ' + why if why else ''}"
    )


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load`` of one file, weights only (see :func:`weights_only_loads`)."""
    with weights_only_loads():
        return torch.load(path, map_location="cpu")


def _save_failed(err: Exception, where: Path) -> EnvironmentFault | None:
    """The environment fault behind a failed save, or None for a bug (which must propagate).
    torch.save reports a short write (disk full, quota) as a RuntimeError from its zip writer
    ("inline_container.cc ... unexpected pos") that names neither the path nor the cause."""
    if isinstance(err, OSError):
        return environment_fault(err, err.filename or where, "saving the checkpoint")
    text = str(err)
    if isinstance(err, RuntimeError) and ("inline_container" in text or "StreamWriter" in text):
        try:
            free = f"{shutil.disk_usage(where.parent).free / 2**20:.0f} MiB free"
        except OSError:
            free = "free space unknown"
        return EnvironmentFault(
            f"{where}: saving the checkpoint failed: torch could not write a file "
            f"({text.splitlines()[0]}); is the disk full or the folder read-only? ({free})",
            path=where,
        )
    return None


class CheckpointManager:
    """Decides when to save (:meth:`due`), saves, prunes (keep the last K plus the best) and
    finds checkpoints. Every rank calls :meth:`save` (DeepSpeed writes per-rank shards); only
    rank 0 renames and prunes."""

    def __init__(
        self,
        accelerator: Accelerator,
        root: str | Path,
        keep_last: int,
        every_steps: int | None = None,
    ) -> None:
        self.accelerator = accelerator
        self.root = Path(root)
        self.keep_last = keep_last
        self.every_steps = every_steps

    def due(self, step: int, applied: bool, done: bool, is_best: bool) -> bool:
        """Save at the interval, at the end of the run, and whenever a validation beat the
        best so far (a best between two interval saves would otherwise never be kept).

        A step whose update was skipped (non-finite gradients) leaves the weights as they
        were, but buffers (codebook usage) saw the bad batch: it is not saved unless the run
        ends there."""
        if not (applied or done):
            return False
        on_interval = self.every_steps is not None and step % self.every_steps == 0
        return on_interval or done or is_best

    def save(self, state: TrainState, config_yaml: str, is_best: bool = False) -> Path:
        """Write a complete checkpoint of ``state``'s step; a full disk or a read-only folder
        is an :class:`EnvironmentFault` naming the folder (the unfinished save is removed, so
        ``latest`` stays on the previous checkpoint)."""
        final = self.root / step_dir_name(state.step)
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        try:
            return self._save(state, config_yaml, is_best, final, partial)
        except (OSError, RuntimeError) as e:
            fault = _save_failed(e, partial)
            if fault is None:
                raise
            shutil.rmtree(partial, ignore_errors=True)  # give the space back
            raise fault from e

    def _save(
        self, state: TrainState, config_yaml: str, is_best: bool, final: Path, partial: Path
    ) -> Path:
        acc = self.accelerator
        if acc.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)  # debris of an interrupted save
        acc.wait_for_everyone()
        acc.save_state(str(partial))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (partial / STATE_FILE).write_text(state.to_json())
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

    def load(self, path: str | Path, config: dict | None = None) -> TrainState:
        """Restore the Accelerate state of checkpoint ``path`` into the prepared objects and
        return its loop state. ``config`` (the resolved config as plain data) is checked
        against the checkpoint's architecture first. Raises :class:`CheckpointError`."""
        path = Path(path)
        read_checkpoint_info(path)
        if config is not None:
            check_architecture(path, config)
        state_path = path / STATE_FILE
        if not state_path.exists():
            raise CheckpointError(
                f"{path}: no {STATE_FILE} (a checkpoint from before the loop state was JSON, "
                "whose pickled state is not loaded; resume it with the TeluCodec that wrote it)"
            )
        try:
            text = state_path.read_text()
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{state_path}: unreadable ({e})") from e
        state = TrainState.from_json(text, str(state_path))
        acc = self.accelerator
        if (
            acc.distributed_type == DistributedType.DEEPSPEED
            and state.world_size != acc.num_processes
        ):
            # refused before load_state, which would fail deep inside DeepSpeed
            raise CheckpointError(
                f"{path}: written by {state.world_size} DeepSpeed process(es), this launch has "
                f"{acc.num_processes}. ZeRO stores each rank's share of the optimizer state in "
                f"that rank's own file, so the checkpoint resumes only on {state.world_size} "
                f"processes: relaunch with --num_processes {state.world_size}. To go on with "
                f"{acc.num_processes}, export its generator (telucodec-export --checkpoint "
                f"{path} --out DIR) and start a new run.name from it with model.init_from=DIR "
                "(the optimizer state then starts afresh)"
            )
        with weights_only_loads():
            acc.load_state(str(path))
        return state

    @staticmethod
    def has_rng_state(path: str | Path, process_index: int) -> bool:
        """Whether checkpoint ``path`` holds RNG states for rank ``process_index`` (not when
        the run that wrote it had fewer processes)."""
        return (Path(path) / f"{RNG_STATE_NAME}_{process_index}.pkl").exists()

    def _prune(self) -> None:
        complete = sorted(p for p in self.root.glob("step_*") if is_complete(p))
        keep = {p.name for p in complete[-self.keep_last :]}
        best = self.root / "best"
        if best.exists():
            keep.add(best.read_text(errors="replace").strip())
        for p in complete:
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
