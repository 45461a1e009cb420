"""What a run costs: device-hours (processes x wall hours) and, with ``run.gpu_hourly_cost``,
money, both projected to ``run.max_steps``; restored on resume from the loop state."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class CostReport:
    """Device time and money: ``device_hours`` = processes x wall hours."""

    device_hours: float
    cost: float | None
    projected_total_hours: float | None = None
    projected_total_device_hours: float | None = None
    projected_total_cost: float | None = None


def project_cost(
    *,
    elapsed_s: float,
    step: int,
    max_steps: int,
    processes: int,
    hourly_cost: float | None,
    rate_since_step: int | None = None,
    rate_since_s: float | None = None,
    prior_wall_s: float = 0.0,
    prior_device_s: float = 0.0,
) -> CostReport:
    """Spend so far and, when a steady-state rate is known, the projection to ``max_steps``.

    ``elapsed_s`` is this session's wall time on ``processes`` devices; ``prior_wall_s`` and
    ``prior_device_s`` are what earlier sessions of the same run (before a resume) used, so
    the totals are the run's, not the session's. The rate is ``(elapsed_s - rate_since_s) /
    (step - rate_since_step)`` seconds per step (measured after the warm-up, so start-up time
    does not inflate it; it includes validation and checkpoint time). Projected wall hours =
    everything so far + rate x remaining steps, on this session's device count.
    """
    device_s = prior_device_s + processes * elapsed_s
    device_hours = device_s / 3600
    cost = None if hourly_cost is None else device_hours * hourly_cost
    rep = CostReport(device_hours=device_hours, cost=cost)
    if rate_since_step is not None and rate_since_s is not None and step > rate_since_step:
        per_step = (elapsed_s - rate_since_s) / (step - rate_since_step)
        rest_s = per_step * max(0, max_steps - step)
        rep.projected_total_hours = (prior_wall_s + elapsed_s + rest_s) / 3600
        rep.projected_total_device_hours = (device_s + processes * rest_s) / 3600
        if hourly_cost is not None:
            rep.projected_total_cost = rep.projected_total_device_hours * hourly_cost
    return rep


class CostMeter:
    """Device time and money of the run across resumes: the totals of earlier sessions come
    from the checkpoint's :class:`trainer.checkpoint.TrainState` (:meth:`resume_from`) and go
    back into it before each save (:meth:`store`). Time a crashed session spent after its
    last checkpoint is not in that checkpoint, so it is not counted. ``on_gpu`` only changes
    the label: on CPU the same arithmetic gives device-hours."""

    def __init__(
        self,
        processes: int,
        hourly_cost: float | None,
        on_gpu: bool,
        warmup: int,
        max_steps: int,
    ) -> None:
        self.processes, self.hourly_cost, self.warmup = processes, hourly_cost, warmup
        self.max_steps = max_steps
        self.label = "GPU-hours" if on_gpu else "device-hours (CPU)"
        self.t0 = time.time()
        self.start_step: int | None = None
        self._mark: tuple[int, float] | None = None
        self.projected = False
        self.prior_wall_s = self.prior_device_s = 0.0

    def resume_from(self, state) -> None:
        """Continue the totals a resumed checkpoint's TrainState carries."""
        self.prior_wall_s, self.prior_device_s = state.wall_seconds, state.device_seconds

    def store(self, state, now: float | None = None) -> None:
        """Write the run's totals so far into ``state`` (called right before a save)."""
        elapsed = (time.time() if now is None else now) - self.t0
        state.wall_seconds = self.prior_wall_s + elapsed
        state.device_seconds = self.prior_device_s + self.processes * elapsed

    @classmethod
    def for_run(cls, cfg, processes: int, on_gpu: bool) -> CostMeter:
        """From an :class:`trainer.config.ExperimentConfig`."""
        return cls(
            processes,
            cfg.run.gpu_hourly_cost,
            on_gpu,
            cfg.guard.cost_warmup_steps,
            cfg.run.max_steps,
        )

    def update(self, step: int, now: float | None = None) -> tuple[dict[str, float], str | None]:
        """Scalars to log at this step, and a one-off projection line after the warm-up."""
        now = time.time() if now is None else now
        if self.start_step is None:
            self.start_step = step - 1
        elapsed = now - self.t0
        if self._mark is None and step - self.start_step >= self.warmup:
            self._mark = (step, elapsed)
        since = self._mark or (None, None)
        # keep projecting from the warm-up mark; the first one after it is printed
        rep = project_cost(
            elapsed_s=elapsed,
            step=step,
            max_steps=self.max_steps,
            processes=self.processes,
            hourly_cost=self.hourly_cost,
            rate_since_step=since[0],
            rate_since_s=since[1],
            prior_wall_s=self.prior_wall_s,
            prior_device_s=self.prior_device_s,
        )
        logs = {"cost/device_hours": rep.device_hours}
        if rep.cost is not None:
            logs["cost/spent"] = rep.cost
        line = None
        if rep.projected_total_hours is not None:
            logs["cost/projected_total_hours"] = rep.projected_total_hours
            logs["cost/projected_total_device_hours"] = rep.projected_total_device_hours
            if rep.projected_total_cost is not None:
                logs["cost/projected_total_cost"] = rep.projected_total_cost
            if not self.projected:
                self.projected = True
                money = (
                    f", cost {rep.projected_total_cost:.2f} at {self.hourly_cost}/h"
                    if rep.projected_total_cost is not None
                    else " (set run.gpu_hourly_cost for money)"
                )
                line = (
                    f"projection to step {self.max_steps}: {rep.projected_total_hours:.2f} h "
                    f"wall, {rep.projected_total_device_hours:.2f} {self.label}{money}"
                )
        return logs, line
