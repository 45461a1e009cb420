"""Preflight: catch a broken configuration in minutes, before a long run.

``telucodec-preflight --config configs/<preset>.yaml [key=value ...]`` (or
``telucodec-train --preflight ...``, which runs it first and aborts on failure):

1. data vs config: both splits hold samples (training validates on ``val``), the
   manifest's sample rate and loudness target vs the config, one fixed training batch
   within full scale (the decoder ends in tanh, so it can never produce
   |x| >= 1) and free of NaN (the segment length is the config's own check);
2. overfit that one batch with the configured model, precision and mel/VQ losses plus a
   waveform L1 term (no GAN: see :class:`trainer.config.PreflightConfig` for why) for
   ``preflight.steps`` steps; it passes when the batch's SNR climbs above
   ``preflight.min_snr_db`` and the output/input RMS ratio ends within
   ``preflight.rms_tolerance`` of 1.

A failed check says what it usually means. SNR and RMS are measured over the whole batch
(all samples pooled), in eval mode with every codebook, in fp32.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace

import torch

from codec.build import build_codec, build_generator_loss
from shards.manifest import Manifest, load_manifest
from shards.reader import make_train_loader
from telucodec.errors import run_cli
from trainer.config import ConfigError, ExperimentConfig, load_config

log = logging.getLogger("telucodec")

# Peak (linear) from which the tanh output needs pre-activations beyond ~2.6 to follow.
NEAR_FULL_SCALE = 0.99


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class PreflightResult:
    ok: bool
    checks: list[Check]
    seconds: float
    history: list[tuple[int, float, float]] = field(default_factory=list)  # step, SNR, RMS

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def report(self) -> str:
        lines = [f"preflight {'PASSED' if self.ok else 'FAILED'} ({self.seconds:.1f} s)"]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        if self.history:
            curve = ", ".join(f"{s}: {snr:.1f} dB / x{r:.2f}" for s, snr, r in self.history)
            lines.append(f"  SNR / RMS ratio by step: {curve}")
        return "\n".join(lines)


def split_problem(manifest: Manifest, shards: object) -> str | None:
    """Why the shard set in ``shards`` cannot be trained on (an empty ``train`` or ``val``
    split: training validates every ``validation.every_steps`` and at the end), with how to
    fix it; None when both splits hold samples."""
    for split in ("train", "val"):
        info = manifest.splits.get(split)
        if info is not None and info.samples > 0:
            continue
        if split == "val":
            return (
                f"{shards}: the val split is empty, and training validates on it; re-run "
                "telucodec-prep with --split time --val-seconds N (one or a few long "
                "recordings), a larger --val-fraction, or --val-list"
            )
        return (
            f"{shards}: the train split is empty; re-run telucodec-prep with a lower "
            "--val-fraction or --split time"
        )
    return None


def manifest_checks(cfg: ExperimentConfig, m: Manifest) -> list[Check]:
    """The shard set against the config: both splits hold samples, and the shards have the
    codec's sample rate and the loudness target the config expects. Preflight reports them;
    the trainer refuses the first that fails before step 1 (:func:`require_manifest_matches`),
    so a run cannot train for thousands of steps and die at its first validation."""
    problem = split_problem(m, cfg.data.shards)
    want = cfg.data.loudness_target_lufs
    return [
        Check(
            "splits",
            problem is None,
            problem
            or f"train {m.splits['train'].samples} chunks, val {m.splits['val'].samples} chunks",
        ),
        Check(
            "sample rate",
            m.sample_rate == cfg.codec.sample_rate,
            f"shards {m.sample_rate} Hz, codec.sample_rate {cfg.codec.sample_rate} Hz",
        ),
        Check(
            "loudness target",
            want is None or abs(want - m.loudness_target_lufs) <= 0.5,
            f"shards normalised to {m.loudness_target_lufs} LUFS"
            + (f", config expects {want} LUFS" if want is not None else " (config: any)"),
        ),
    ]


def require_manifest_matches(cfg: ExperimentConfig, m: Manifest) -> None:
    """Raise :class:`ConfigError` (one line: what and how to fix it) for the first of
    :func:`manifest_checks` that fails."""
    for c in manifest_checks(cfg, m):
        if c.ok:
            continue
        if c.name == "splits":  # its detail names the shard set and the fix
            raise ConfigError(c.detail)
        raise ConfigError(f"{cfg.data.shards}: {c.name} does not match the config: {c.detail}")


def fixed_batch(cfg: ExperimentConfig) -> torch.Tensor:
    """``preflight.batch_items`` training crops ``[B, 1, segment_samples]`` (the first batch
    of the training stream for ``data.seed``; the same every call), gained by
    ``preflight.input_gain_db``."""
    loader = make_train_loader(
        cfg.data.shards,
        batch_size=cfg.preflight.batch_items,
        segment_samples=cfg.data.segment_samples,
        seed=cfg.data.seed,
        num_workers=0,
        base=cfg.data.shard_base,
        crops_per_chunk=1,
        sample_rate=None,  # a rate mismatch is reported as a check, not raised
    )
    with torch.random.fork_rng(devices=[]):
        x = next(iter(loader))["audio"].float()
    return x * 10 ** (cfg.preflight.input_gain_db / 20)


def check_data(cfg: ExperimentConfig, x: torch.Tensor) -> list[Check]:
    """Manifest and one batch vs the config (see module docstring)."""
    checks = manifest_checks(cfg, load_manifest(cfg.data.shards))
    finite = bool(torch.isfinite(x).all())
    checks.append(Check("finite samples", finite, "no NaN/Inf" if finite else "NaN/Inf in batch"))
    peak = float(x.abs().max()) if finite else math.nan
    checks.append(
        Check(
            "full scale",
            finite and peak < 1.0,
            f"batch peak {peak:.3f} ({20 * math.log10(max(peak, 1e-9)):+.1f} dBFS)"
            + (
                ""
                if finite and peak < 1.0
                else ": samples at or beyond full scale; the decoder ends in tanh and can only "
                "produce (-1, 1), so it can never reproduce them (level mismatch: a gain "
                "applied after prep, or shards not made by telucodec-prep)"
            ),
        )
    )
    return checks


def _batch_snr_rms(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    x, y = x.double(), y.double()
    snr = 10 * math.log10(float(x.pow(2).sum()) / max(float((x - y).pow(2).sum()), 1e-20))
    rms = math.sqrt(float(y.pow(2).mean()) / max(float(x.pow(2).mean()), 1e-20))
    return snr, rms


@dataclass
class _Fit:
    """What overfitting one batch did: the (step, SNR dB, RMS ratio) curve, the mel loss at
    the first and last step, the step where the loss became non-finite (or None)."""

    history: list[tuple[int, float, float]]
    mel0: float
    mel: float
    nonfinite_at: int | None
    lr: float
    precision: str


def overfit(
    cfg: ExperimentConfig, x: torch.Tensor, device: torch.device
) -> tuple[list[Check], list[tuple[int, float, float]]]:
    """Train a fresh codec on ``x`` ``[B, 1, T]`` alone; returns checks and the curve."""
    fit = _fit(cfg, x, device)
    return _diagnose(cfg, fit, float(x.abs().max())), fit.history


def _fit(cfg: ExperimentConfig, x: torch.Tensor, device: torch.device) -> _Fit:
    p = cfg.preflight
    from trainer.engine import resolve_precision

    precision = resolve_precision(cfg, device.type != "cuda")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    torch.manual_seed(cfg.run.seed)
    # quantizer dropout off: it trains random bitrates, which only slows fitting one batch
    codec = build_codec(replace(cfg.codec, quantizer_dropout=0.0)).to(device)
    loss_fn = build_generator_loss(
        replace(cfg.loss, waveform_l1_weight=p.waveform_l1_weight), cfg.codec.sample_rate
    ).to(device)
    lr = cfg.optim.lr_g * p.lr_multiplier
    opt = torch.optim.AdamW(codec.parameters(), lr=lr, betas=cfg.optim.betas)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    x = x.to(device)
    every = max(1, p.steps // 8)
    fit = _Fit([], math.nan, math.nan, None, lr, precision)

    def evaluate(step: int) -> None:
        codec.eval()
        with torch.no_grad():
            y = codec(x, n_quantizers=cfg.codec.n_codebooks).audio.float()
        codec.train()
        fit.history.append((step, *_batch_snr_rms(x, y)))

    evaluate(0)
    for step in range(1, p.steps + 1):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = codec(x)
        loss, terms = loss_fn(x, out.audio, out)
        if not torch.isfinite(loss):
            fit.nonfinite_at = step
            break
        fit.mel = float(terms["mel"])
        fit.mel0 = fit.mel if math.isnan(fit.mel0) else fit.mel0
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if step % every == 0 or step == p.steps:
            evaluate(step)
    return fit


def _diagnose(cfg: ExperimentConfig, fit: _Fit, peak: float) -> list[Check]:
    """The two overfit checks and, when one fails, the most likely reason why."""
    p, precision, mel0, mel = cfg.preflight, fit.precision, fit.mel0, fit.mel
    _, snr, rms = fit.history[-1]
    best = max(h[1] for h in fit.history)
    nonfinite = fit.nonfinite_at is not None
    snr_ok = not nonfinite and snr >= p.min_snr_db
    if nonfinite:
        why = (
            f"the loss became non-finite at step {fit.nonfinite_at}: precision ({precision}: "
            "fp16 overflow) or a learning rate far too high"
        )
    elif snr_ok:
        why = "the model can fit this batch"
    elif not mel < 0.9 * mel0:
        why = (
            f"the mel loss barely moved ({mel0:.3f} -> {mel:.3f}): learning rate too low "
            f"(optim.lr_g {cfg.optim.lr_g:g}, x{p.lr_multiplier:g} here) or gradients not "
            f"reaching the weights (precision {precision})"
        )
    elif peak >= NEAR_FULL_SCALE or rms < 1 - p.rms_tolerance:
        why = (
            f"the output cannot reach the input's level (RMS ratio {rms:.2f}, input peak "
            f"{peak:.2f}): level mismatch between the data and the tanh output range"
        )
    else:
        why = (
            "the spectrum is learnt but not the waveform: loss weights (mel vs "
            "preflight.waveform_l1_weight), or more preflight.steps for this model size"
        )
    checks = [
        Check(
            "overfit SNR",
            snr_ok,
            f"{snr:.2f} dB after {p.steps} steps (best {best:.2f}, need >= {p.min_snr_db}) at "
            f"lr {fit.lr:g}, precision {precision}: {why}",
        )
    ]
    rms_ok = not nonfinite and abs(rms - 1) <= p.rms_tolerance
    rms_why = "output level matches the input"
    stalled = not nonfinite and not mel < 0.9 * mel0
    if not rms_ok and stalled:
        rms_why = "still the untrained model's level: training did not move it (see SNR)"
    elif not rms_ok and rms < 1:
        rms_why = (
            "the output is too quiet: level mismatch (inputs beyond the decoder's tanh range "
            "when the input peak is near 1) or an output activation that cannot reach the "
            "input level; with a healthy level, waveform-loss weight too high while phase is "
            "still wrong (the old runs' 0.2-0.47 collapse)"
        )
    elif not rms_ok:
        rms_why = "the output is louder than the input: loss weights or learning rate"
    checks.append(
        Check(
            "overfit RMS ratio",
            rms_ok,
            f"{rms:.3f} (need 1 +- {p.rms_tolerance}, input peak {peak:.2f}): {rms_why}",
        )
    )
    return checks


def run_preflight(cfg: ExperimentConfig, device: torch.device | None = None) -> PreflightResult:
    """Run every check; the global RNG state is left as it was."""
    t0 = time.time()
    problem = split_problem(load_manifest(cfg.data.shards), cfg.data.shards)
    if problem is not None:  # nothing else is worth checking on this shard set
        return PreflightResult(False, [Check("splits", False, problem)], time.time() - t0)
    if device is None:
        use_gpu = torch.cuda.is_available() and not cfg.run.cpu
        # under `accelerate launch --preflight` every rank runs it on its own GPU
        rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", rank) if use_gpu else torch.device("cpu")
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else None):
        x = fixed_batch(cfg)
        checks = check_data(cfg, x)
        history: list[tuple[int, float, float]] = []
        if all(c.ok for c in checks if c.name == "finite samples"):
            more, history = overfit(cfg, x, device)
            checks += more
    ok = all(c.ok for c in checks)
    return PreflightResult(ok, checks, time.time() - t0, history)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="telucodec-preflight",
        description="Overfit one fixed batch of the real shards with the configured model "
        "and check data vs config. Extra arguments are key=value overrides "
        "(e.g. preflight.steps=300 optim.lr_g=3e-4).",
    )
    p.add_argument("--config", required=True, help="YAML preset, e.g. configs/debug.yaml")
    args, overrides = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli("telucodec-preflight", lambda: _preflight(args.config, overrides))


def _preflight(config: str, overrides: list[str]) -> int:
    res = run_preflight(load_config(config, overrides))
    print(res.report())
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
