"""The training loop: ``accelerate launch -m trainer.train --config configs/<preset>.yaml``.

One top-to-bottom loop (nanoGPT style): fetch micro-batches, run one GAN optimizer step
(:func:`trainer.step.gan_step`: generator forward, discriminator step on real and generated
audio in one batched call, generator step; DAC's order), then guard, log, validate and
checkpoint at their intervals. A stop request (a signal such as SLURM's SIGTERM, or a stop
file; :mod:`trainer.stopping`) ends the run at the next step where the ranks agree, with a
checkpoint and an export, like reaching ``max_steps``. How backward and the optimizer steps
run (Accelerate DDP, or the generator in a DeepSpeed ZeRO engine with the discriminator
beside it) lives in :mod:`trainer.engine`.

With gradient accumulation the discriminator steps after the last micro-batch's
discriminator loss, so earlier micro-batches' generator terms see the discriminator of the
previous step.

Batch size is per process: the global batch is ``batch_size x grad_accum x processes``
and the learning rate is used as given (no implicit scaling; see launch/README.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed

from shards.manifest import load_manifest
from shards.reader import iter_validation, make_train_loader
from telucodec.errors import UserInputError, run_cli
from trainer import export
from trainer.alarms import AlarmLog, CostMeter, Guard
from trainer.checkpoint import (
    CheckpointManager,
    TrainState,
    check_architecture,
    find_latest,
    read_checkpoint_info,
)
from trainer.config import (
    ConfigError,
    ExperimentConfig,
    config_to_yaml,
    load_config,
    save_config,
)
from trainer.distributed import average_usage
from trainer.engine import build_accelerator, dist_timeout, resolve_precision
from trainer.init_from import generator_frozen
from trainer.step import build_step_objects, gan_step
from trainer.stopping import StopRequest, ignore_signals
from trainer.tracking import Tracker
from trainer.validation import mel_image, quantizer_schedule, validate

log = logging.getLogger("telucodec")


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    last_losses: dict[str, float]
    validation: object | None
    checkpoint: Path | None
    export_dir: Path | None
    stop_reason: str
    alarms: list[dict] = field(default_factory=list)  # rows of alarms.jsonl raised this run


class NonFiniteStop(RuntimeError):
    """Too many optimizer steps in a row had non-finite gradients (guard config)."""


def _setup_logging(accelerator: Accelerator) -> None:
    level = logging.INFO if accelerator.is_main_process else logging.WARNING
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s [rank {accelerator.process_index}] %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # Accelerate reports every file it saves at INFO; our own line per checkpoint suffices.
    logging.getLogger("accelerate").setLevel(logging.WARNING)


def train(cfg: ExperimentConfig, resume: str | None = None) -> TrainResult:
    """Train per ``cfg``. ``resume``: None (fresh; refuses a run folder that already has
    checkpoints), "auto" (latest complete checkpoint if any, else fresh), or a path."""
    # installed first, so a signal during set-up is also acted on at the first step
    stop = StopRequest(cfg.run.stop_signals, cfg.run.stop_file or cfg.run.run_dir / "STOP")
    stop.install()
    try:
        return _train(cfg, resume, stop)
    finally:
        stop.restore()


def _train(cfg: ExperimentConfig, resume: str | None, stop: StopRequest) -> TrainResult:
    acc = build_accelerator(cfg)
    _setup_logging(acc)
    run_dir = cfg.run.run_dir
    ckpt_root = run_dir / "checkpoints"
    manifest = load_manifest(cfg.data.shards)
    if manifest.sample_rate != cfg.codec.sample_rate:
        raise ConfigError(
            f"config field `codec.sample_rate`: {cfg.codec.sample_rate} Hz but the shards in "
            f"{cfg.data.shards} are {manifest.sample_rate} Hz"
        )
    want_lufs = cfg.data.loudness_target_lufs
    if want_lufs is not None and abs(want_lufs - manifest.loudness_target_lufs) > 0.5:
        raise ConfigError(
            f"config field `data.loudness_target_lufs`: {want_lufs} LUFS but the shards in "
            f"{cfg.data.shards} were normalised to {manifest.loudness_target_lufs} LUFS"
        )
    sr = cfg.codec.sample_rate

    resume_from: Path | None = None
    if resume == "auto":
        resume_from = find_latest(ckpt_root)
    elif resume:
        resume_from = Path(resume)
    elif find_latest(ckpt_root) is not None:
        raise UserInputError(
            f"{ckpt_root} already holds checkpoints; pass --resume to continue that run "
            "or choose another run.name"
        )

    if resume_from is not None:  # refuse a damaged or mismatched checkpoint before building
        read_checkpoint_info(resume_from)
        check_architecture(resume_from, yaml.safe_load(config_to_yaml(cfg)))

    # seeded with run.seed inside: identical initial weights on every rank
    eng, loss_fn = build_step_objects(acc, cfg, init_generator=resume_from is None)
    o = cfg.optim

    state = TrainState(world_size=acc.num_processes)
    eng.register_for_checkpointing()
    ckpt = CheckpointManager(acc, ckpt_root, cfg.checkpoint.keep_last)
    if resume_from is not None:  # loop state from JSON, tensors weights-only: no code runs
        state = ckpt.load(resume_from)
        eng.after_resume()
        log.info("resumed from %s at step %d", resume_from, state.step)
        if state.world_size != acc.num_processes:
            log.warning(
                "checkpoint was written with %d processes, now %d: the data stream restarts "
                "at the same per-rank position but composes different global batches",
                state.world_size,
                acc.num_processes,
            )
            state.world_size = acc.num_processes
        if not ckpt.has_rng_state(resume_from, acc.process_index):
            # a rank the checkpoint's run did not have: left with the build seed, every such
            # rank would draw the same quantizer dropout and crops
            seed = resumed_rank_seed(cfg.run.seed, state.step, acc.process_index)
            set_seed(seed)
            log.warning("no RNG state for this rank in the checkpoint: seeded with %d", seed)
    else:
        # Different quantizer-dropout draws per rank; weights are already identical.
        set_seed(cfg.run.seed + acc.process_index)

    config_yaml = config_to_yaml(cfg)
    tracker = Tracker(acc, cfg.wandb)
    state.wandb_run_id = tracker.start(cfg.run.name, run_dir, cfg.to_dict(), state.wandb_run_id)
    main_proc = acc.is_main_process
    alarms = AlarmLog(run_dir / "alarms.jsonl" if main_proc else None, tracker, emit=main_proc)
    guard = Guard(cfg.guard, alarms, manifest.loudness_target_lufs, cfg.codec.codebook_size)
    cost = CostMeter.for_run(cfg, acc.num_processes, acc.device.type == "cuda")
    cost.resume_from(state)  # zeros on a fresh run

    b = cfg.data
    global_batch = b.batch_size * o.grad_accum * acc.num_processes
    seconds_per_step = global_batch * b.segment_samples / sr
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_yaml)
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
            global_batch,
            b.batch_size,
            o.grad_accum,
            acc.num_processes,
            seconds_per_step,
            o.lr_g,
            o.lr_d,
        )
    keys_log = None
    if b.log_keys:  # debug: which crops this rank trained on (tests check ranks are disjoint)
        run_dir.mkdir(parents=True, exist_ok=True)
        keys_log = open(run_dir / f"data_keys_rank{acc.process_index}.jsonl", "a")  # noqa: SIM115

    loader = make_train_loader(
        cfg.data.shards,
        batch_size=b.batch_size,
        segment_samples=b.segment_samples,
        seed=b.seed,
        rank=acc.process_index,
        world_size=acc.num_processes,
        num_workers=b.num_workers,
        start_step=state.data_batches,
        base=b.shard_base,
        crops_per_chunk=b.crops_per_chunk,
        sample_rate=sr,
        pin_memory=acc.device.type == "cuda",
        # the stop signals are the main process's to act on (trainer/stopping.py)
        worker_init_fn=functools.partial(ignore_signals, stop.signals),
    )
    # DataLoader draws its base seed from the global RNG when the iterator is created; fork
    # so that draw does not shift the stream a resumed run restored from its checkpoint.
    with torch.random.fork_rng(devices=[]):
        batches = iter(loader)
    # "best" is judged at the codec's operating point (8 codebooks = 4 kbps in production),
    # which is always validated
    default_n_q = cfg.codec.operating_n_quantizers
    n_q_val = sorted({*quantizer_schedule(cfg.codec, cfg.validation.kbps), default_n_q})
    kbps_of = {n: cfg.codec.bitrate_kbps(n) for n in n_q_val}

    last_losses: dict[str, float] = {}
    val_result = None
    saved: Path | None = None
    stop_reason = "max_steps"
    t_start = time.time()
    t_last_val = t_start  # when the last validation began (validation.every_minutes)
    t_window, steps_window = time.time(), 0

    def micro_batches():
        """The step's micro-batches, fetched lazily (one in flight at a time)."""
        while True:
            batch = next(batches)
            if main_proc and cfg.guard.enabled:
                guard.check_batch_level(state.step + 1, batch["audio"])  # CPU copy: no sync
            state.data_batches += 1
            if keys_log is not None:
                row = {k: batch[k] for k in ("keys", "offsets", "epochs")}
                keys_log.write(json.dumps({"step": state.step + 1, **row}) + "\n")
            yield batch["audio"].to(acc.device, non_blocking=True)

    while state.step < cfg.run.max_steps:
        eng.gen.train()
        eng.disc.train()
        frozen = generator_frozen(cfg, state.step)  # optim.disc_warmup_steps
        res = gan_step(eng, loss_fn, micro_batches(), o.grad_accum, train_gen=not frozen)
        state.step += 1
        state.samples_seen += global_batch
        steps_window += 1
        # same verdict on every rank: the norms were taken after the gradient all-reduce
        halt = guard.record_step(state.step, res.ok_g, res.ok_d)
        if halt is not None:  # no checkpoint: the last good one stays the latest
            tracker.summary({"stop_reason": halt, "steps": state.step})
            tracker.finish()
            raise NonFiniteStop(halt)
        applied = res.applied

        # the quantizer's recent residuals come from this step's forward: not after a bad one
        dead_code_due = cfg.run.dead_code_every and state.step % cfg.run.dead_code_every == 0
        if applied and dead_code_due and not frozen:
            replaced = eng.replace_dead_codes(cfg.run.seed + state.step)
            if replaced.sum() > 0:
                log.info(
                    "step %d: re-initialised dead codes per codebook %s",
                    state.step,
                    replaced.tolist(),
                )

        if state.step % cfg.run.log_every == 0 or state.step == cfg.run.max_steps:
            names = sorted(res.terms)
            vec = torch.stack(
                [res.terms[k].detach().float() for k in names]
                + [res.loss_d.float(), res.loss_g.float()]
            )
            vec = acc.reduce(vec, reduction="mean")  # every rank joins; values averaged over ranks
            last_losses = dict(zip([*names, "disc", "gen_total"], vec.tolist(), strict=True))
            dt = (time.time() - t_window) / steps_window
            t_window, steps_window = time.time(), 0
            average_usage(acc, eng.codec)  # every rank joins: the usage of all ranks' data
            stats = eng.codec.quantizer.codebook_stats()
            lr_g, lr_d = eng.lrs()
            logs = {f"loss/{k}": v for k, v in last_losses.items()}
            logs.update(
                {
                    "grad_norm/generator": float(res.gnorm_g),
                    "grad_norm/discriminator": float(res.gnorm_d),
                    "lr/generator": lr_g,
                    "lr/discriminator": lr_d,
                    "progress/global_batch": global_batch,
                    "progress/world_size": acc.num_processes,
                    "perf/step_time_s": dt,
                    "perf/audio_seconds_per_second": seconds_per_step / dt,
                    "progress/samples_seen": state.samples_seen,
                    "progress/audio_hours_seen": state.samples_seen * b.segment_samples / sr / 3600,
                    "codebook/usage_mean": stats["usage"].mean().item(),
                    "codebook/perplexity_mean": stats["perplexity"].mean().item(),
                    "codebook/dead_total": stats["dead"].sum().item(),
                }
            )
            for i in range(len(stats["usage"])):
                logs[f"codebook/usage_{i}"] = stats["usage"][i].item()
                logs[f"codebook/perplexity_{i}"] = stats["perplexity"][i].item()
            if acc.device.type == "cuda":
                logs["perf/gpu_mem_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            cost_logs, projection = cost.update(state.step)
            logs.update(cost_logs)
            logs["guard/nonfinite_steps"] = guard.nonfinite_total
            if main_proc and cfg.guard.enabled:
                guard.on_log_step(state.step, stats, last_losses)
            tracker.log(logs, step=state.step)
            if projection is not None and main_proc:
                log.info("%s", projection)
            log.info(
                "step %d | mel %.3f adv %.3f fm %.3f disc %.3f | gnorm g %.1f d %.1f | "
                "%.2f s/step, %.1f audio-s/s | codebook usage %.2f",
                state.step,
                last_losses.get("mel", math.nan),
                last_losses.get("adversarial", math.nan),
                last_losses.get("feature_matching", math.nan),
                last_losses["disc"],
                float(res.gnorm_g),
                float(res.gnorm_d),
                dt,
                seconds_per_step / dt,
                logs["codebook/usage_mean"],
            )

        out_of_time, val_due, asked = _agree(acc, cfg, state.step, t_start, t_last_val, stop)
        stopping = asked is not None
        done = state.step >= cfg.run.max_steps or out_of_time or stopping
        if out_of_time:
            stop_reason = f"max_minutes ({cfg.run.max_minutes})"
        if stopping:
            stop_reason = f"stop requested ({asked})"
            log.warning("step %d: %s; saving and exporting", state.step, stop_reason)
            # a SIGKILL before the run finishes then shows as preempted, not crashed
            tracker.mark_preempting()

        is_best = False
        # a stop request skips the final validation: the launcher's kill may be seconds away
        # and the checkpoint comes first (the resumed run validates on its schedule)
        if state.step % cfg.validation.every_steps == 0 or val_due or (done and not stopping):
            t_last_val = time.time()
            early = None  # the early-stop verdict, taken on rank 0
            if acc.is_main_process:
                # eager: a model compiled in place (DeepSpeed's engine.compile) would otherwise
                # recompile for validation's shapes (measured 112 s vs 0.6 s, debug preset)
                with torch.compiler.set_stance("force_eager"):
                    val_result = _run_validation(
                        cfg, acc, eng, n_q_val, kbps_of, tracker, state.step, t_last_val - t_start
                    )
                at = val_result.at(default_n_q)
                if at.mel_distance < state.best_val_mel:
                    state.best_val_mel, state.best_step, is_best = at.mel_distance, state.step, True
                early = guard.on_validation(state.step, at)
            acc.wait_for_everyone()
            early = guard.agree_early_stop(acc, state.step, early)
            if early is not None:
                stop_reason, done = early, True
        # a skipped step leaves the weights as they were, but buffers (codebook usage) saw
        # the bad batch: it does not become the latest checkpoint unless the run ends here
        if (applied or done) and (state.step % cfg.checkpoint.every_steps == 0 or done):
            cost.store(state)
            saved = ckpt.save(state, config_yaml, is_best=is_best)
            if acc.is_main_process:
                log.info("checkpoint %s", saved)
        if done:
            break

    if keys_log is not None:
        keys_log.close()
    export_dir = None
    if acc.is_main_process:
        if stop_reason.startswith("stop requested"):
            stop.consume_file()
        export_dir = export.export_generator(
            eng.codec, cfg, manifest, run_dir / "export", step=state.step
        )
        tracker.summary({"stop_reason": stop_reason, "steps": state.step, **guard.summary()})
        log.info(
            "stopped: %s at step %d; generator exported to %s", stop_reason, state.step, export_dir
        )
    acc.wait_for_everyone()
    tracker.finish()
    res = TrainResult(run_dir, state.step, last_losses, val_result, saved, export_dir, stop_reason)
    res.alarms = alarms.raised
    return res


def resumed_rank_seed(seed: int, step: int, rank: int) -> int:
    """The seed of a rank that resumes a checkpoint without its own RNG state: distinct per
    rank, and apart from the fresh-run seeds (``seed + rank``) and from other resume steps."""
    return seed + 1_000_003 * (step + 1) + rank


def _agree(
    acc, cfg, step: int, t_start: float, t_last_val: float, stop: StopRequest
) -> tuple[bool, bool, str | None]:
    """``(out of time, validation due by the clock, stop request or None)``, the same on
    every rank (the request as this rank saw it, or "on another rank").

    One process: read every step. Several: every rank must stop (and validate) at the same
    step, and a signal reaches the ranks at different moments, so they agree every
    ``run.agree_every`` steps: one 3-value all-reduce there, and no collective, host sync or
    stop-file lookup on the other steps. A flag raised on any rank holds for all.
    """
    max_min, every_min = cfg.run.max_minutes, cfg.validation.every_minutes
    if acc.num_processes > 1 and step % cfg.run.agree_every != 0:
        return False, False, None
    now = time.time()
    late = max_min is not None and (now - t_start) / 60 >= max_min
    due = every_min is not None and (now - t_last_val) / 60 >= every_min
    asked = stop.reason()
    if acc.num_processes == 1:
        return late, due, asked
    flags = torch.tensor([float(late), float(due), float(asked is not None)], device=acc.device)
    late_all, due_all, stop_all = (acc.reduce(flags, "sum") > 0).tolist()
    return bool(late_all), bool(due_all), (asked or "on another rank") if stop_all else None


def _run_validation(cfg, acc, eng, n_q_val, kbps_of, tracker, step, elapsed_s: float):
    codec = eng.codec
    t0 = time.time()
    items = iter_validation(
        cfg.data.shards,
        base=cfg.data.shard_base,
        max_items=cfg.validation.max_items,
        max_seconds=cfg.validation.max_seconds,
    )
    res = validate(
        codec,
        items,
        n_q_val,
        kbps_of,
        cfg.codec.sample_rate,
        acc.device,
        audio_examples=cfg.validation.audio_examples,
        mel=cfg.loss.mel,
    )
    wall_s = time.time() - t0
    # the other ranks wait in a barrier meanwhile: a validation nearing the process-group
    # timeout would fail the whole job, so its margin is logged and warned about
    limit_s = dist_timeout(cfg).total_seconds()
    log.info("step %d %s", step, res.table())
    log.info("validation took %.1f s (process-group timeout %.0f s)", wall_s, limit_s)
    if acc.num_processes > 1 and wall_s > 0.5 * limit_s:
        log.warning(
            "validation took %.0f s, over half the process-group timeout (%.0f s): raise "
            "run.dist_timeout_minutes or lower validation.max_seconds",
            wall_s,
            limit_s,
        )
    # wall time this session had trained when validation began: curves against time, for
    # comparisons at a fixed budget (benchmarks/bench_budget.py)
    logs = {**res.flat(), "val/session_wall_s": elapsed_s, "val/wall_s": wall_s}
    tracker.log({**logs, "val/dist_timeout_s": limit_s}, step=step)
    run = tracker.run()
    if run is not None and res.examples:
        try:
            import wandb

            media = {}
            for i, (key, x, y) in enumerate(res.examples):
                sr = cfg.codec.sample_rate
                media[f"audio/{i}_input"] = wandb.Audio(x.numpy().T, sample_rate=sr, caption=key)
                media[f"audio/{i}_output"] = wandb.Audio(y.numpy().T, sample_rate=sr, caption=key)
                fig = mel_image(x, y, sr)
                media[f"mel/{i}"] = wandb.Image(fig, caption=key)
                import matplotlib.pyplot as plt

                plt.close(fig)
            run.log(media, step=step)
        except Exception as e:  # noqa: BLE001 - media logging must never stop training
            log.warning("W&B media logging failed: %s", e)
    return res


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="telucodec-train",
        description="Train a TeluCodec codec. Extra arguments are key=value overrides "
        "(e.g. data.batch_size=8 run.max_steps=200) or old-script flags (--batch_size 8).",
    )
    p.add_argument("--config", required=True, help="YAML preset, e.g. configs/debug.yaml")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="continue a run: no value or 'auto' = the latest complete checkpoint of this "
        "run (fresh start if none); or a checkpoint folder",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument(
        "--preflight",
        action="store_true",
        help="run telucodec-preflight (overfit one real batch, data vs config checks) first "
        "and abort if it fails",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the run ends, 1 when preflight fails, 2 for a user or environment error
    (one line) or the non-finite guard's stop; any other error keeps its traceback."""
    parser = build_arg_parser()
    args, overrides = parser.parse_known_args(argv)
    return run_cli("telucodec-train", lambda: _main(args, overrides))


def _main(args: argparse.Namespace, overrides: list[str]) -> int:
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(config_to_yaml(cfg))
        return 0
    if args.preflight:
        from trainer.preflight import run_preflight

        res = run_preflight(cfg)
        print(res.report(), file=sys.stderr if not res.ok else sys.stdout)
        if not res.ok:
            print("telucodec-train: preflight failed; not starting the run", file=sys.stderr)
            return 1
    try:
        train(cfg, resume=args.resume)
    except NonFiniteStop as e:  # the guard's documented stop (exit 2), not a bug
        print(f"telucodec-train: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["train", "main", "TrainResult", "save_config", "build_accelerator", "resolve_precision"]

if __name__ == "__main__":
    sys.exit(main())
