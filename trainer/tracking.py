"""Weights & Biases through Accelerate's trackers, made impossible to crash a run.

* Mode "auto" runs online only when an API key is configured, else offline: the run is
  written under ``<run_dir>/wandb`` and can be uploaded later with ``wandb sync``.
* A failing ``wandb.init`` (unreachable server, bad key) falls back to offline, then to no
  tracking, with one warning. A failing ``log`` is reported once and training goes on.
  A failed online init leaves its run id registered in W&B's service process, so an offline
  init with the same id fails with "run ID ... is in use"; the service is torn down between
  the attempts (``wandb.teardown()``), which frees the id and keeps the run id (a resumed
  run still continues its own W&B run).
* Only the main process talks to W&B (Accelerate's trackers already run on the main
  process only), so there is exactly one run per training job.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from telucodec.wandb_mode import resolve_wandb_mode
from trainer.config import WandbConfig

log = logging.getLogger("telucodec")


def resolve_mode(cfg: WandbConfig) -> str:
    """The W&B mode for ``cfg`` (:func:`telucodec.wandb_mode.resolve_wandb_mode`)."""
    return resolve_wandb_mode(cfg.enabled, cfg.mode)


def _free_failed_init() -> None:
    """Release what a failed ``wandb.init`` left behind (its run id stays claimed in the W&B
    service process otherwise; ``wandb.finish()`` does not help, as no run was returned)."""
    try:
        import wandb

        wandb.teardown()
    except Exception as e:  # noqa: BLE001 - tracking must never stop training
        log.warning("W&B teardown after a failed init failed (%s)", e)


class Tracker:
    """Thin, failure-proof wrapper; ``active`` is False when W&B is off or failed."""

    # seconds ``wandb.init`` may wait for the server before the offline fallback
    init_timeout_s: float = 60.0

    def __init__(self, accelerator: Accelerator, cfg: WandbConfig) -> None:
        self.accelerator = accelerator
        self.cfg = cfg
        self.mode = resolve_mode(cfg)
        self.active = False
        self.run_id: str | None = None
        self._warned = False
        self.local_log: Path | None = None

    def start(self, run_name: str, run_dir: Path, config: dict, run_id: str | None) -> str | None:
        """Start (or resume, when ``run_id`` is given) the W&B run. Returns the run id."""
        if self.accelerator.is_main_process:
            # A local copy of every logged scalar, W&B or not: the benchmark scripts and a
            # user without W&B read the curves from here.
            run_dir.mkdir(parents=True, exist_ok=True)
            self.local_log = run_dir / "metrics.jsonl"
        if self.mode == "disabled":
            return None
        self.run_id = run_id or uuid.uuid4().hex[:12]
        for mode in dict.fromkeys([self.mode, "offline"]):
            init = {
                "name": run_name,
                "id": self.run_id,
                "resume": "allow",
                "dir": str(run_dir),
                "mode": mode,
                "entity": self.cfg.entity,
                # do not let a dead network stall the start of training for minutes
                "settings": {"init_timeout": self.init_timeout_s, "silent": True},
            }
            try:
                if self.accelerator.is_main_process:
                    run_dir.mkdir(parents=True, exist_ok=True)
                self.accelerator.init_trackers(
                    self.cfg.project, config=config, init_kwargs={"wandb": init}
                )
                self.active = True
                self.mode = mode
                if self.accelerator.is_main_process:
                    where = run_dir / "wandb"
                    log.info("W&B run %s (%s mode) in %s", self.run_id, mode, where)
                    if mode == "offline":
                        log.info("upload later with: wandb sync %s/offline-run-*", where)
                return self.run_id
            except Exception as e:  # noqa: BLE001 - any tracker failure must not stop training
                log.warning("W&B init in %s mode failed (%s); trying without it", mode, e)
                self.accelerator.trackers = []
                _free_failed_init()
        self.mode = "disabled"
        return None

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.local_log is not None:
            row = {"step": step}
            for k, v in values.items():
                if isinstance(v, int | float):
                    row[k] = v if math.isfinite(v) else str(v)
            with open(self.local_log, "a") as f:
                f.write(json.dumps(row) + "\n")
        if not self.active:
            return
        try:
            self.accelerator.log(values, step=step)
        except Exception as e:  # noqa: BLE001
            if not self._warned:
                log.warning("W&B log failed (%s); training continues", e)
                self._warned = True

    def run(self):
        """The underlying ``wandb.Run`` on the main process (for media), else None."""
        if not self.active or not self.accelerator.is_main_process:
            return None
        try:
            return self.accelerator.get_tracker("wandb", unwrap=True)
        except Exception:  # noqa: BLE001
            return None

    def log_media(self, examples, sample_rate: int, step: int) -> None:
        """Validation examples ``[(key, input [1, T], output [1, T]), ...]`` as W&B audio and
        mel images; like every tracker call, a failure is a warning, never a stop."""
        run = self.run()
        if run is None or not examples:
            return
        try:
            import matplotlib.pyplot as plt
            import wandb

            from trainer.validation import mel_image

            media = {}
            for i, (key, x, y) in enumerate(examples):
                media[f"audio/{i}_input"] = wandb.Audio(x.numpy().T, sample_rate=sample_rate,
                                                        caption=key)  # fmt: skip
                media[f"audio/{i}_output"] = wandb.Audio(y.numpy().T, sample_rate=sample_rate,
                                                         caption=key)  # fmt: skip
                fig = mel_image(x, y, sample_rate)
                media[f"mel/{i}"] = wandb.Image(fig, caption=key)
                plt.close(fig)
            run.log(media, step=step)
        except Exception as e:  # noqa: BLE001 - media logging must never stop training
            log.warning("W&B media logging failed: %s", e)

    def alert(self, title: str, text: str) -> None:
        run = self.run()
        if run is None:
            return
        try:
            run.alert(title=title, text=text)
        except Exception:  # noqa: BLE001 - offline runs cannot alert; the console already has it
            pass

    def summary(self, values: dict[str, Any]) -> None:
        run = self.run()
        if run is None:
            return
        try:
            run.summary.update(values)
        except Exception:  # noqa: BLE001
            pass

    def mark_preempting(self) -> None:
        """Tell W&B this run is being stopped by its scheduler: if it is killed before
        :meth:`finish`, the dashboard shows it as preempted (resumable), not crashed."""
        run = self.run()
        if run is None:
            return
        try:
            run.mark_preempting()
        except Exception as e:  # noqa: BLE001 - tracking must never stop training
            log.warning("W&B mark_preempting failed (%s)", e)

    def finish(self) -> None:
        if not self.active:
            return
        try:
            self.accelerator.end_training()
        except Exception as e:  # noqa: BLE001
            log.warning("W&B finish failed (%s)", e)
