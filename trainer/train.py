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
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from telucodec.errors import run_cli
from trainer import export
from trainer.config import ExperimentConfig, config_to_yaml, load_config
from trainer.init_from import generator_frozen
from trainer.run import Run, build_run
from trainer.step import gan_step
from trainer.stopping import StopRequest, agree

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


def train(cfg: ExperimentConfig, resume: str | None = None) -> TrainResult:
    """Train per ``cfg``. ``resume``: None (fresh; refuses a run folder that already has
    checkpoints), "auto" (latest complete checkpoint if any, else fresh), or a path."""
    # installed first, so a signal during set-up is also acted on at the first step
    stop = StopRequest(cfg.run.stop_signals, cfg.run.stop_file or cfg.run.run_dir / "STOP")
    stop.install()
    try:
        run = build_run(cfg, resume, stop)
        try:
            return _loop(run)
        finally:
            run.batches.close()
    finally:
        stop.restore()


def _loop(run: Run) -> TrainResult:
    cfg, acc, eng, state = run.cfg, run.acc, run.eng, run.state
    val_result, saved, stop_reason = None, None, "max_steps"
    while state.step < cfg.run.max_steps:
        eng.gen.train()
        eng.disc.train()
        frozen = generator_frozen(cfg, state.step)  # optim.disc_warmup_steps
        res = gan_step(eng, run.loss_fn, run.batches.step(), cfg.optim.grad_accum,
                       train_gen=not frozen)  # fmt: skip
        state.step += 1
        state.samples_seen += run.logger.global_batch
        # same verdict on every rank: the norms were taken after the gradient all-reduce
        halt = run.guard.record_step(state.step, res.ok_g, res.ok_d)
        if halt is not None:  # no checkpoint: the last good one stays the latest
            run.tracker.summary({"stop_reason": halt, "steps": state.step})
            run.tracker.finish()
            raise NonFiniteStop(halt)
        # the quantizer's recent residuals come from this step's forward: not after a bad one
        dead_code_due = cfg.run.dead_code_every and state.step % cfg.run.dead_code_every == 0
        if res.applied and dead_code_due and not frozen:
            replaced = eng.replace_dead_codes(cfg.run.seed + state.step)
            if replaced.sum() > 0:
                log.info("step %d: re-initialised dead codes per codebook %s", state.step,
                         replaced.tolist())  # fmt: skip
        run.logger.log(state, res)

        late, clock_due, asked = agree(acc, cfg, state.step, run.t_start,
                                       run.validator.t_last, run.stop)  # fmt: skip
        done = state.step >= cfg.run.max_steps or late or asked is not None
        if late:
            stop_reason = f"max_minutes ({cfg.run.max_minutes})"
        if asked is not None:
            stop_reason = f"stop requested ({asked})"
            log.warning("step %d: %s; saving and exporting", state.step, stop_reason)
            # a SIGKILL before the run finishes then shows as preempted, not crashed
            run.tracker.mark_preempting()

        is_best = False
        if run.validator.should_validate(state.step, clock_due, done, asked is not None):
            verdict = run.validator.validate(state)
            val_result = verdict.result or val_result
            is_best = verdict.is_best
            if verdict.early_stop is not None:
                stop_reason, done = verdict.early_stop, True
        if run.checkpoints.due(state.step, res.applied, done, is_best):
            run.cost.store(state)
            saved = run.checkpoints.save(state, run.config_yaml, is_best=is_best)
            log.info("checkpoint %s", saved)
        if done:
            break
    return _finish(run, stop_reason, val_result, saved)


def _finish(run: Run, stop_reason: str, val_result, saved: Path | None) -> TrainResult:
    """Export the generator and close the tracker (rank 0), once every rank is done."""
    cfg, acc, state = run.cfg, run.acc, run.state
    export_dir = None
    if acc.is_main_process:
        if stop_reason.startswith("stop requested"):
            run.stop.consume_file()
        export_dir = export.export_generator(
            run.eng.codec, cfg, run.manifest, cfg.run.run_dir / "export", step=state.step
        )
        run.tracker.summary({"stop_reason": stop_reason, "steps": state.step,
                             **run.guard.summary()})  # fmt: skip
        log.info(
            "stopped: %s at step %d; generator exported to %s", stop_reason, state.step, export_dir
        )
    acc.wait_for_everyone()
    run.tracker.finish()
    res = TrainResult(cfg.run.run_dir, state.step, run.logger.last_losses, val_result, saved,
                      export_dir, stop_reason)  # fmt: skip
    res.alarms = run.alarms.raised
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


__all__ = ["train", "main", "TrainResult", "NonFiniteStop"]

if __name__ == "__main__":
    sys.exit(main())
