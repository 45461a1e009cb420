"""What the training log records at a log step: the losses (averaged over ranks), gradient
norms, learning rates, throughput, progress, codebook health, cost and guard counters, to
``metrics.jsonl``/W&B and one console line. Every rank calls :meth:`StepLogger.log` at the
same steps (it holds collectives); only rank 0 writes."""

from __future__ import annotations

import logging
import math
import time

import torch
from accelerate import Accelerator

from trainer.alarms import Guard
from trainer.batches import MicroBatches
from trainer.checkpoint import TrainState
from trainer.config import ExperimentConfig
from trainer.cost import CostMeter
from trainer.distributed import average_usage
from trainer.engine import GanEngine
from trainer.step import StepResult
from trainer.tracking import Tracker

log = logging.getLogger("telucodec")


class StepLogger:
    """Decides when a step is logged (``run.log_every`` and the last step) and logs it."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        acc: Accelerator,
        eng: GanEngine,
        tracker: Tracker,
        guard: Guard,
        cost: CostMeter,
        batches: MicroBatches,
    ) -> None:
        self.cfg, self.acc, self.eng, self.batches = cfg, acc, eng, batches
        self.tracker, self.guard, self.cost = tracker, guard, cost
        b = cfg.data
        self.global_batch = b.batch_size * cfg.optim.grad_accum * acc.num_processes
        self.seconds_per_step = self.global_batch * b.segment_samples / cfg.codec.sample_rate
        self.last_losses: dict[str, float] = {}
        self._t_window, self._steps_window = time.time(), 0

    def due(self, step: int) -> bool:
        return step % self.cfg.run.log_every == 0 or step == self.cfg.run.max_steps

    def log(self, state: TrainState, res: StepResult) -> None:
        """Count the step; at a log step, log it (every rank must call this every step)."""
        self._steps_window += 1
        if not self.due(state.step):
            return
        acc, eng = self.acc, self.eng
        names = sorted(res.terms)
        vec = torch.stack(
            [res.terms[k].detach().float() for k in names]
            + [res.loss_d.float(), res.loss_g.float()]
        )
        vec = acc.reduce(vec, reduction="mean")  # every rank joins; values averaged over ranks
        self.last_losses = dict(zip([*names, "disc", "gen_total"], vec.tolist(), strict=True))
        dt = (time.time() - self._t_window) / self._steps_window
        self._t_window, self._steps_window = time.time(), 0
        average_usage(acc, eng.codec)  # every rank joins: the usage of all ranks' data
        stats = eng.codec.quantizer.codebook_stats()
        logs = self._metrics(state, res, dt, stats)
        cost_logs, projection = self.cost.update(state.step)
        logs.update(cost_logs)
        logs["guard/nonfinite_steps"] = self.guard.nonfinite_total
        n_bad = torch.tensor(float(self.batches.skipped_samples), device=acc.device)
        logs["data/skipped_samples"] = acc.reduce(n_bad, reduction="sum").item()  # all ranks
        if acc.is_main_process and self.cfg.guard.enabled:
            self.guard.on_log_step(state.step, stats, self.last_losses)
        self.tracker.log(logs, step=state.step)
        if projection is not None and acc.is_main_process:
            log.info("%s", projection)
        losses = self.last_losses
        log.info(
            "step %d | mel %.3f adv %.3f fm %.3f disc %.3f | gnorm g %.1f d %.1f | "
            "%.2f s/step, %.1f audio-s/s | codebook usage %.2f",
            state.step,
            losses.get("mel", math.nan),
            losses.get("adversarial", math.nan),
            losses.get("feature_matching", math.nan),
            losses["disc"],
            float(res.gnorm_g),
            float(res.gnorm_d),
            dt,
            self.seconds_per_step / dt,
            logs["codebook/usage_mean"],
        )

    def _metrics(self, state: TrainState, res: StepResult, dt: float, stats: dict) -> dict:
        b, sr = self.cfg.data, self.cfg.codec.sample_rate
        lr_g, lr_d = self.eng.lrs()
        logs = {f"loss/{k}": v for k, v in self.last_losses.items()}
        logs.update(
            {
                "grad_norm/generator": float(res.gnorm_g),
                "grad_norm/discriminator": float(res.gnorm_d),
                "lr/generator": lr_g,
                "lr/discriminator": lr_d,
                "progress/global_batch": self.global_batch,
                "progress/world_size": self.acc.num_processes,
                "perf/step_time_s": dt,
                "perf/audio_seconds_per_second": self.seconds_per_step / dt,
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
        if self.acc.device.type == "cuda":
            logs["perf/gpu_mem_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return logs
