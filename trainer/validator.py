"""When to validate, and what a validation does around :func:`trainer.validation.validate`:
rank 0 scores the generator on the validation split (fp32, eager) at every bitrate the
config asks for, logs the table, the metrics and the audio examples, judges "best" at the
codec's operating point, and takes the early-stop verdict; the other ranks wait and then
agree on that verdict."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from accelerate import Accelerator

from shards.reader import iter_validation
from trainer.alarms import Guard
from trainer.checkpoint import TrainState
from trainer.config import ExperimentConfig
from trainer.engine import GanEngine, dist_timeout
from trainer.tracking import Tracker
from trainer.validation import ValidationResult, quantizer_schedule, validate

log = logging.getLogger("telucodec")


@dataclass
class Verdict:
    """What one validation decided: ``result`` (rank 0; None elsewhere), whether it beat the
    best so far (the same on every rank), and an early-stop reason or None (agreed)."""

    result: ValidationResult | None
    is_best: bool
    early_stop: str | None


class Validator:
    """``should_validate`` decides, ``validate`` runs (every rank calls both at every step)."""

    def __init__(
        self, cfg: ExperimentConfig, acc: Accelerator, eng: GanEngine, tracker: Tracker,
        guard: Guard, t_start: float,
    ) -> None:  # fmt: skip
        self.cfg, self.acc, self.eng, self.tracker, self.guard = cfg, acc, eng, tracker, guard
        self.t_start = t_start
        self.t_last = t_start  # when the last validation began (validation.every_minutes)
        # "best" is judged at the codec's operating point (8 codebooks = 4 kbps in
        # production), which is always validated
        self.operating_n_q = cfg.codec.operating_n_quantizers
        self.n_q = sorted({*quantizer_schedule(cfg.codec, cfg.validation.kbps), self.operating_n_q})
        self.kbps_of = {n: cfg.codec.bitrate_kbps(n) for n in self.n_q}

    def should_validate(self, step: int, clock_due: bool, done: bool, stopping: bool) -> bool:
        """On the step interval, when ``validation.every_minutes`` has passed (``clock_due``,
        agreed across ranks), and at the end of the run, except after a stop request: the
        launcher's kill may be seconds away and the checkpoint comes first (the resumed run
        validates on its schedule)."""
        every = step % self.cfg.validation.every_steps == 0
        return every or clock_due or (done and not stopping)

    def validate(self, state: TrainState) -> Verdict:
        """Validate at ``state.step``; updates ``state.best_val_mel``/``best_step``."""
        self.t_last = time.time()
        result, is_best, early = None, False, None
        if self.acc.is_main_process:
            # eager: a model compiled in place (DeepSpeed's engine.compile) would otherwise
            # recompile for validation's shapes (measured 112 s vs 0.6 s, debug preset)
            with torch.compiler.set_stance("force_eager"):
                result = self._score(state.step, self.t_last - self.t_start)
            at = result.at(self.operating_n_q)
            if at.mel_distance < state.best_val_mel:
                state.best_val_mel, state.best_step, is_best = at.mel_distance, state.step, True
            early = self.guard.on_validation(state.step, at)
        self.acc.wait_for_everyone()
        early = self.guard.agree_early_stop(self.acc, state.step, early)
        return Verdict(result, self._agree_best(is_best), early)

    def _agree_best(self, is_best: bool) -> bool:
        """Rank 0's "best" verdict on every rank: all ranks take part in a checkpoint save."""
        if self.acc.num_processes == 1:
            return is_best
        flag = torch.tensor([float(is_best)], device=self.acc.device)
        return bool(self.acc.reduce(flag, "sum").item() > 0)

    def _score(self, step: int, elapsed_s: float) -> ValidationResult:
        cfg = self.cfg
        t0 = time.time()
        items = iter_validation(
            cfg.data.shards,
            base=cfg.data.shard_base,
            max_items=cfg.validation.max_items,
            max_seconds=cfg.validation.max_seconds,
        )
        res = validate(
            self.eng.codec,
            items,
            self.n_q,
            self.kbps_of,
            cfg.codec.sample_rate,
            self.acc.device,
            audio_examples=cfg.validation.audio_examples,
            mel=cfg.loss.mel,  # the mel that is trained is the mel that ranks "best"
        )
        wall_s = time.time() - t0
        # the other ranks wait in a barrier meanwhile: a validation nearing the process-group
        # timeout would fail the whole job, so its margin is logged and warned about
        limit_s = dist_timeout(cfg).total_seconds()
        log.info("step %d %s", step, res.table())
        log.info("validation took %.1f s (process-group timeout %.0f s)", wall_s, limit_s)
        if self.acc.num_processes > 1 and wall_s > 0.5 * limit_s:
            log.warning(
                "validation took %.0f s, over half the process-group timeout (%.0f s): raise "
                "run.dist_timeout_minutes or lower validation.max_seconds",
                wall_s,
                limit_s,
            )
        # wall time this session had trained when validation began: curves against time, for
        # comparisons at a fixed budget (benchmarks/bench_budget.py)
        logs = {**res.flat(), "val/session_wall_s": elapsed_s, "val/wall_s": wall_s}
        self.tracker.log({**logs, "val/dist_timeout_s": limit_s}, step=step)
        self.tracker.log_media(res.examples, cfg.codec.sample_rate, step)
        return res
