"""Everything a training run is made of, built once before step 1 (:func:`build_run`): the
accelerator and the engine (both models, optimisers, schedules), the loop state (fresh or
restored from a checkpoint), the tracker, the guard and the cost meter, and the components
that own their schedules: the micro-batch source, the step logger, the validator and the
checkpoint manager. The loop in :mod:`trainer.train` only calls them.

Every refusal a run can make up front (the shard set against the config, the checkpoint to
resume against the config) happens here, before any step is trained.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from shards.manifest import Manifest, load_manifest
from telucodec.errors import UserInputError
from trainer.alarms import AlarmLog, Guard
from trainer.batches import MicroBatches
from trainer.checkpoint import (
    CheckpointManager,
    TrainState,
    check_architecture,
    find_latest,
    read_checkpoint_info,
)
from trainer.config import ExperimentConfig, config_to_yaml
from trainer.cost import CostMeter
from trainer.engine import GanEngine, build_accelerator, resolve_precision
from trainer.preflight import require_manifest_matches
from trainer.step import build_step_objects
from trainer.step_logger import StepLogger
from trainer.stopping import StopRequest
from trainer.tracking import Tracker
from trainer.validator import Validator

log = logging.getLogger("telucodec")


@dataclass
class Run:
    cfg: ExperimentConfig
    acc: Accelerator
    eng: GanEngine
    loss_fn: nn.Module
    state: TrainState
    manifest: Manifest
    config_yaml: str
    tracker: Tracker
    alarms: AlarmLog
    guard: Guard
    cost: CostMeter
    batches: MicroBatches
    logger: StepLogger
    validator: Validator
    checkpoints: CheckpointManager
    stop: StopRequest
    t_start: float


def build_run(cfg: ExperimentConfig, resume: str | None, stop: StopRequest) -> Run:
    """Build the run of ``cfg``; ``resume`` as :func:`trainer.train.train` takes it."""
    acc = build_accelerator(cfg)
    setup_logging(acc)
    manifest = load_manifest(cfg.data.shards)
    require_manifest_matches(cfg, manifest)  # rate, loudness, both splits: before step 1
    ckpt_root = cfg.run.run_dir / "checkpoints"
    resume_from = resume_point(ckpt_root, resume)
    config_yaml = config_to_yaml(cfg)
    if resume_from is not None:  # refuse a damaged or mismatched checkpoint before building
        read_checkpoint_info(resume_from)
        check_architecture(resume_from, yaml.safe_load(config_yaml))

    # seeded with run.seed inside: identical initial weights on every rank
    eng, loss_fn = build_step_objects(acc, cfg, init_generator=resume_from is None)
    eng.register_for_checkpointing()
    checkpoints = CheckpointManager(
        acc, ckpt_root, cfg.checkpoint.keep_last, every_steps=cfg.checkpoint.every_steps
    )
    state = restore(cfg, acc, eng, checkpoints, resume_from)

    tracker = Tracker(acc, cfg.wandb)
    state.wandb_run_id = tracker.start(
        cfg.run.name, cfg.run.run_dir, cfg.to_dict(), state.wandb_run_id
    )
    main_proc = acc.is_main_process
    run_dir = cfg.run.run_dir
    alarms = AlarmLog(run_dir / "alarms.jsonl" if main_proc else None, tracker, emit=main_proc)
    guard = Guard(cfg.guard, alarms, manifest.loudness_target_lufs, cfg.codec.codebook_size)
    cost = CostMeter.for_run(cfg, acc.num_processes, acc.device.type == "cuda")
    cost.resume_from(state)  # zeros on a fresh run
    if main_proc:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_yaml)
    batches = MicroBatches(cfg, acc, state, guard, stop.signals)
    logger = StepLogger(cfg, acc, eng, tracker, guard, cost, batches)
    if main_proc:
        announce(cfg, acc, eng, logger)
    t_start = time.time()
    validator = Validator(cfg, acc, eng, tracker, guard, t_start)
    return Run(cfg, acc, eng, loss_fn, state, manifest, config_yaml, tracker, alarms, guard,
               cost, batches, logger, validator, checkpoints, stop, t_start)  # fmt: skip


def setup_logging(accelerator: Accelerator) -> None:
    level = logging.INFO if accelerator.is_main_process else logging.WARNING
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s [rank {accelerator.process_index}] %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # Accelerate reports every file it saves at INFO; our own line per checkpoint suffices.
    logging.getLogger("accelerate").setLevel(logging.WARNING)


def resume_point(ckpt_root: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: None (fresh; refuses a run folder that already has
    checkpoints), "auto" (the latest complete one, or None), or a given folder."""
    if resume == "auto":
        return find_latest(ckpt_root)
    if resume:
        return Path(resume)
    if find_latest(ckpt_root) is not None:
        raise UserInputError(
            f"{ckpt_root} already holds checkpoints; pass --resume to continue that run "
            "or choose another run.name"
        )
    return None


def restore(
    cfg: ExperimentConfig,
    acc: Accelerator,
    eng: GanEngine,
    checkpoints: CheckpointManager,
    resume_from: Path | None,
) -> TrainState:
    """The loop state: fresh (each rank its own RNG stream), or the checkpoint's with every
    prepared object restored from it."""
    if resume_from is None:
        # Different quantizer-dropout draws per rank; weights are already identical.
        set_seed(cfg.run.seed + acc.process_index)
        return TrainState(world_size=acc.num_processes)
    # loop state from JSON, tensors weights-only: no code runs
    state = checkpoints.load(resume_from)
    eng.after_resume()
    for change in eng.apply_config_lrs():  # the config's rates, not the checkpoint's
        log.warning("%s", change)
    log.info("resumed from %s at step %d", resume_from, state.step)
    if state.world_size != acc.num_processes:
        log.warning(
            "checkpoint was written with %d processes, now %d: the data stream restarts "
            "at the same per-rank position but composes different global batches",
            state.world_size,
            acc.num_processes,
        )
        state.world_size = acc.num_processes
    if not checkpoints.has_rng_state(resume_from, acc.process_index):
        # a rank the checkpoint's run did not have: left with the build seed, every such
        # rank would draw the same quantizer dropout and crops
        seed = resumed_rank_seed(cfg.run.seed, state.step, acc.process_index)
        set_seed(seed)
        log.warning("no RNG state for this rank in the checkpoint: seeded with %d", seed)
    return state


def resumed_rank_seed(seed: int, step: int, rank: int) -> int:
    """The seed of a rank that resumes a checkpoint without its own RNG state: distinct per
    rank, and apart from the fresh-run seeds (``seed + rank``) and from other resume steps."""
    return seed + 1_000_003 * (step + 1) + rank


def announce(cfg: ExperimentConfig, acc: Accelerator, eng: GanEngine, logger: StepLogger) -> None:
    """The first lines of the log: the model, its size, and what one step trains on."""
    o, b = cfg.optim, cfg.data
    log.info("codec: %s", cfg.codec.summary())
    log.info(
        "params: generator %.2f M, discriminator %.2f M",
        sum(p.numel() for p in eng.codec.parameters()) / 1e6,
        sum(p.numel() for p in eng.discriminator.parameters()) / 1e6,
    )
    log.info(
        "%d process(es) on %s (%s), precision %s; global batch %d = %d per process x %d "
        "accum x %d processes (%.1f s of audio per step); lr %g (g) %g (d) as given",
        acc.num_processes,
        acc.device,
        eng.kind,
        resolve_precision(cfg, acc.device.type != "cuda"),
        logger.global_batch,
        b.batch_size,
        o.grad_accum,
        acc.num_processes,
        logger.seconds_per_step,
        o.lr_g,
        o.lr_d,
    )
