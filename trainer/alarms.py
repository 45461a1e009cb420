"""Guardrails during training: alarms and the early-stop policy (the cost meter is in
:mod:`trainer.cost`).

Everything here works on plain numbers the loop already has (validation results, logged
losses, codebook stats, the CPU copy of a batch), so it adds no GPU work and no host sync
of its own; the one sync the guardrails need (is the gradient norm finite?) lives in
:mod:`trainer.engine`. Monitors run on the main process; the loop decides stops that every
rank must agree on (see ``trainer.train``).

An alarm is written three ways: a WARNING on the console, a W&B alert plus a run-summary
entry (``alarm/<kind>``), and one JSON line in ``<run_dir>/alarms.jsonl`` (kept with or
without W&B). Each kind is raised once per condition episode: it re-arms after the
condition has cleared, so a persistent problem does not flood the log.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import torch

from trainer.config import GuardConfig

log = logging.getLogger("telucodec")

# Crops quieter than this (RMS, dBFS) are pauses, not speech: prep's default silence floor.
SILENCE_DBFS = -60.0


class AlarmLog:
    """Console + W&B + ``alarms.jsonl`` sink. ``tracker`` may be None (tests, preflight)."""

    def __init__(self, path: Path | None, tracker=None, emit: bool = True) -> None:
        # emit=False on non-main ranks: they count (to take the same decisions) but stay quiet
        self.path = path
        self.tracker = tracker
        self.emit = emit
        self.raised: list[dict] = []
        self._active: set[str] = set()

    def raise_(self, kind: str, step: int, message: str, **values: float) -> None:
        """Report ``kind`` unless it is already active (see :meth:`clear`)."""
        if kind in self._active:
            return
        self._active.add(kind)
        row = {"time": round(time.time(), 3), "step": step, "kind": kind, "message": message}
        row.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self.raised.append(row)
        if not self.emit:
            return
        log.warning("ALARM [%s] step %d: %s", kind, step, message)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.tracker is not None:
            self.tracker.alert(f"telucodec: {kind}", f"step {step}: {message}")
            self.tracker.summary(
                {f"alarm/{kind}": f"step {step}: {message}", "alarms/count": len(self.raised)}
            )

    def clear(self, kind: str) -> None:
        """The condition behind ``kind`` is gone: a later recurrence alarms again."""
        self._active.discard(kind)

    def kinds(self) -> list[str]:
        return [r["kind"] for r in self.raised]


def batch_levels_dbfs(audio: torch.Tensor) -> list[float]:
    """RMS level (dBFS, full scale 1.0 = 0 dBFS) of every crop in ``audio`` ``[B, 1, T]``
    or ``[B, T]`` that is not silent (above :data:`SILENCE_DBFS`). Call it on the CPU batch:
    a few thousand multiply-adds, no device sync."""
    x = audio.detach().float().reshape(audio.shape[0], -1)
    level = 20 * torch.log10(x.pow(2).mean(-1).sqrt().clamp_min(1e-10))
    return [v for v in level.tolist() if v > SILENCE_DBFS]


class Guard:
    """All training-time monitors for one run (main process)."""

    def __init__(
        self,
        cfg: GuardConfig,
        alarms: AlarmLog,
        loudness_target_lufs: float,
        codebook_size: int,
    ) -> None:
        self.cfg = cfg
        self.alarms = alarms
        self.expected_dbfs = loudness_target_lufs + cfg.level_offset_db
        self.codebook_size = codebook_size
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self._low_snr_run = 0
        self._disc_run = 0
        self._levels: deque[float] = deque(maxlen=cfg.level_window_crops)

    # -- non-finite steps ------------------------------------------------------------
    def record_step(self, step: int, finite_g: bool, finite_d: bool) -> str | None:
        """Count a step; returns a stop message once ``max_nonfinite_in_a_row`` steps in a
        row were skipped, else None."""
        if finite_g and finite_d:
            self.nonfinite_in_a_row = 0
            self.alarms.clear("nonfinite")
            return None
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        which = " and ".join(
            n for n, ok in (("generator", finite_g), ("discriminator", finite_d)) if not ok
        )
        msg = (
            f"non-finite {which} gradient norm: optimizer step skipped "
            f"({self.nonfinite_in_a_row} in a row, {self.nonfinite_total} in all)"
        )
        self.alarms.raise_("nonfinite", step, msg, in_a_row=self.nonfinite_in_a_row)
        if self.nonfinite_in_a_row >= self.cfg.max_nonfinite_in_a_row:
            return (
                f"stopped at step {step}: {self.nonfinite_in_a_row} optimizer steps in a row "
                f"had non-finite gradients (guard.max_nonfinite_in_a_row="
                f"{self.cfg.max_nonfinite_in_a_row}); weights were never updated with them and "
                "the last good checkpoint is kept. Usual causes: NaN/Inf in the data (run "
                "`python -m shards.audit`), a learning rate too high, fp16 overflow."
            )
        return None

    # -- validation ------------------------------------------------------------------
    def check_validation(self, step: int, snr_db: float, rms_ratio: float, kbps: float) -> None:
        """Amplitude band (after warm-up) and low SNR for several validations in a row."""
        c = self.cfg
        if step >= c.warmup_steps:
            if not rms_ratio >= c.rms_ratio_low:  # NaN counts as collapse
                self.alarms.raise_(
                    "amplitude_collapse",
                    step,
                    f"validation RMS ratio {rms_ratio:.3f} at {kbps:g} kbps is below "
                    f"{c.rms_ratio_low} (output {20 * math.log10(max(rms_ratio, 1e-6)):+.1f} dB "
                    "vs input): the codec is turning the level down, typical of waveform "
                    "losses while phase is still wrong, or of inputs beyond the decoder range",
                    rms_ratio=rms_ratio,
                )
            elif rms_ratio > c.rms_ratio_high:
                self.alarms.raise_(
                    "amplitude_blowup",
                    step,
                    f"validation RMS ratio {rms_ratio:.3f} at {kbps:g} kbps is above "
                    f"{c.rms_ratio_high}: the output is louder than the input",
                    rms_ratio=rms_ratio,
                )
            else:
                self.alarms.clear("amplitude_collapse")
                self.alarms.clear("amplitude_blowup")
        if not snr_db >= c.snr_alarm_db:
            self._low_snr_run += 1
        else:
            self._low_snr_run = 0
            self.alarms.clear("low_snr")
        if self._low_snr_run >= c.snr_patience:
            self.alarms.raise_(
                "low_snr",
                step,
                f"validation SNR {snr_db:.2f} dB at {kbps:g} kbps is below {c.snr_alarm_db} dB "
                f"for {self._low_snr_run} validations in a row",
                snr_db=snr_db,
            )

    def early_stop(self, step: int, snr_db: float) -> str | None:
        """The stop reason when the ``min_snr_db_after_steps`` policy ends the run."""
        floor = self.cfg.min_snr_db_after_steps
        if floor is None or step < floor.steps or snr_db >= floor.snr_db:
            return None
        return (
            f"early stop: validation SNR {snr_db:.2f} dB is below {floor.snr_db} dB at step "
            f"{step} (guard.min_snr_db_after_steps: steps {floor.steps})"
        )

    def on_validation(self, step: int, at) -> str | None:
        """Validation alarms for the operating-point result ``at`` (a
        :class:`trainer.validation.BitrateResult`); returns the early-stop reason, if any."""
        if not self.cfg.enabled:
            return None
        self.check_validation(step, at.snr_db, at.rms_ratio, at.kbps)
        return self.early_stop(step, at.snr_db)

    def agree_early_stop(self, acc, step: int, reason: str | None) -> str | None:
        """Every rank gets rank 0's verdict (one all-reduce, at validation steps only and
        only when the policy is configured); rank 0 records it as an alarm."""
        if not self.cfg.enabled or self.cfg.min_snr_db_after_steps is None:
            return None
        if acc.num_processes > 1:
            flag = torch.tensor([float(reason is not None)], device=acc.device)
            if acc.reduce(flag, "sum").item() > 0 and reason is None:
                reason = "early stop (decided on rank 0: guard.min_snr_db_after_steps)"
        if reason is not None:
            self.alarms.raise_("early_stop", step, reason)
        return reason

    def summary(self) -> dict:
        return {
            "guard/nonfinite_steps": self.nonfinite_total,
            "alarms/kinds": sorted(set(self.alarms.kinds())),
        }

    # -- codebooks and the GAN balance (at log steps) --------------------------------
    def on_log_step(self, step: int, stats: dict[str, torch.Tensor], losses: dict) -> None:
        """Codebook health (``codebook_stats()``) and GAN balance (averaged logged losses)."""
        self.check_codebooks(
            step, stats["usage"].tolist(), stats["perplexity"].tolist(), stats["dead"].tolist()
        )
        if "adversarial" in losses:
            self.check_gan_balance(step, losses["disc"], losses["adversarial"])

    def check_codebooks(
        self, step: int, usage: Sequence[float], perplexity: Sequence[float], dead: Sequence[float]
    ) -> None:
        if step < self.cfg.warmup_steps:
            return
        k = self.codebook_size
        bad = [
            f"#{i} usage {u:.2f} perplexity {p:.1f}/{k} dead {int(d)}"
            for i, (u, p, d) in enumerate(zip(usage, perplexity, dead, strict=True))
            if u < self.cfg.min_codebook_usage or p < self.cfg.min_codebook_perplexity_frac * k
        ]
        if not bad:
            self.alarms.clear("codebook_collapse")
            return
        self.alarms.raise_(
            "codebook_collapse",
            step,
            f"{len(bad)} of {len(usage)} codebooks collapsed (usage < "
            f"{self.cfg.min_codebook_usage} or perplexity < "
            f"{self.cfg.min_codebook_perplexity_frac} x {k}): " + "; ".join(bad),
            dead_total=float(sum(dead)),
        )

    def check_gan_balance(self, step: int, disc_loss: float, adv_loss: float) -> None:
        c = self.cfg
        if disc_loss < c.disc_loss_low and adv_loss > c.adv_loss_high:
            self._disc_run += 1
        else:
            self._disc_run = 0
            self.alarms.clear("discriminator_overpowering")
        if self._disc_run >= c.disc_window:
            self.alarms.raise_(
                "discriminator_overpowering",
                step,
                f"discriminator loss {disc_loss:.3f} < {c.disc_loss_low} and adversarial loss "
                f"{adv_loss:.2f} > {c.adv_loss_high} for {self._disc_run} log steps in a row: "
                "the discriminator wins outright and its gradients stop guiding the generator "
                "(lower optim.lr_d or loss.adversarial_weight)",
                disc_loss=disc_loss,
                adv_loss=adv_loss,
            )

    # -- batch level -----------------------------------------------------------------
    def check_batch_level(self, step: int, audio: torch.Tensor) -> None:
        """Median RMS (dBFS) of the last ``level_window_crops`` non-silent crops vs the
        level the manifest's loudness target implies (calibration: see README)."""
        levels = batch_levels_dbfs(audio)
        self._levels.extend(levels)
        n_needed = min(self.cfg.level_window_crops, 8)
        if len(self._levels) < n_needed:
            return
        median = float(torch.tensor(list(self._levels)).median())
        off = median - self.expected_dbfs
        if abs(off) <= self.cfg.level_tolerance_db:
            self.alarms.clear("batch_level")
            return
        self.alarms.raise_(
            "batch_level",
            step,
            f"training crops sit at {median:.1f} dBFS median RMS, {off:+.1f} dB from the "
            f"{self.expected_dbfs:.1f} dBFS the manifest's loudness target implies (tolerance "
            f"{self.cfg.level_tolerance_db} dB): a data pipeline bug (gain applied twice, "
            "per-clip peak normalisation, wrong shard set)",
            median_dbfs=median,
            offset_db=off,
        )
