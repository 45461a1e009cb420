"""The SNR validation hook: run the validation split through the codec at a few bitrates
and say, in words, what state the codec is in.

Runs on one process (rank 0) while the others wait at a barrier; it is bounded by
``validation.max_items`` / ``max_seconds`` so that wait is bounded too. It runs in fp32
(no autocast): these numbers decide "best" and early stops, so they must not depend on the
training precision.

The diagnosis separates the two failure modes that look alike in a loss curve:
* a level problem: output RMS far from the input's (amplitude collapse or blow-up);
* a phase problem: the energy envelope is right (envelope correlation high) but the
  waveform is uncorrelated with the input (waveform correlation ~0), so SNR sits near
  -0.5 dB. A mel-trained codec goes through this phase early in training; waveform losses
  then push the level down, which produces *both*.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from codec import metrics
from codec.config import MelSpec


@dataclass
class BitrateResult:
    n_quantizers: int
    kbps: float
    snr_db: float
    si_snr_db: float
    mel_distance: float
    rms_ratio: float
    waveform_corr: float
    envelope_corr: float
    ref_peak: float
    est_peak: float
    est_min: float
    est_max: float
    diagnosis: str
    # output/input level per frequency band (codec.metrics.bands), over all chunks together
    band_levels: dict[str, float] = field(default_factory=dict)


@dataclass
class ValidationResult:
    items: int
    seconds: float
    per_bitrate: list[BitrateResult]
    examples: list[tuple[str, torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def at(self, n_quantizers: int) -> BitrateResult:
        for r in self.per_bitrate:
            if r.n_quantizers == n_quantizers:
                return r
        raise KeyError(n_quantizers)

    def flat(self, prefix: str = "val") -> dict[str, float]:
        """Scalars for the trackers: ``val/4kbps/snr_db`` and so on."""
        out: dict[str, float] = {f"{prefix}/items": self.items, f"{prefix}/seconds": self.seconds}
        for r in self.per_bitrate:
            tag = f"{prefix}/{r.kbps:g}kbps"
            for name in (
                "snr_db",
                "si_snr_db",
                "mel_distance",
                "rms_ratio",
                "waveform_corr",
                "envelope_corr",
                "ref_peak",
                "est_peak",
                "est_min",
                "est_max",
            ):
                out[f"{tag}/{name}"] = getattr(r, name)
            for band, v in r.band_levels.items():
                out[f"{tag}/level_{band}"] = v
        return out

    def table(self) -> str:
        """Console table, one line per bitrate, with the diagnosis in words."""
        lines = [
            f"validation: {self.items} chunks, {self.seconds:.1f} s",
            "  kbps  n_q   SNR dB  SI-SNR dB  mel dist  RMS ratio  wave corr  env corr  verdict",
        ]
        for r in self.per_bitrate:
            lines.append(
                f"  {r.kbps:4g}  {r.n_quantizers:3d}  {r.snr_db:7.2f}  {r.si_snr_db:9.2f}  "
                f"{r.mel_distance:8.3f}  {r.rms_ratio:9.3f}  {r.waveform_corr:9.3f}  "
                f"{r.envelope_corr:8.3f}  {r.diagnosis}"
            )
        names = list(self.per_bitrate[0].band_levels) if self.per_bitrate else []
        if names:  # where the level is lost: a low RMS ratio can be one missing band
            lines.append("  level out/in by band (Hz): " + "  ".join(n[:-2] for n in names))
            for r in self.per_bitrate:
                cells = "  ".join(
                    f"{v:>{len(n) - 2}.2f}"
                    for n, v in zip(names, r.band_levels.values(), strict=True)
                )
                lines.append(f"  {r.kbps:4g} kbps{' ' * 18}{cells}")
        return "\n".join(lines)


def quantizer_schedule(codec_cfg, kbps_list: Iterable[float]) -> list[int]:
    """Distinct codebook counts for the requested bitrates, clamped to what the codec has
    (a 6 kbps request on a model whose full rate is lower validates at its full rate)."""
    per = codec_cfg.bitrate_kbps(1)
    out = []
    for kbps in kbps_list:
        n = max(1, min(codec_cfg.n_codebooks, int(math.floor(kbps / per + 1e-9))))
        if n not in out:
            out.append(n)
    return sorted(out)


@torch.no_grad()
def validate(
    codec: nn.Module,
    items: Iterable,
    n_quantizers: list[int],
    kbps_of: dict[int, float],
    sample_rate: int,
    device: torch.device,
    audio_examples: int = 2,
    mel: MelSpec | None = None,
) -> ValidationResult:
    """Run every validation chunk through ``codec`` at each entry of ``n_quantizers``.

    items: ``(key, audio FloatTensor[1, n], meta)`` in a fixed order (the reader's
    validation iterator). Metrics are :mod:`codec.metrics` combined by its
    :class:`~codec.metrics.MetricAccumulator` (each chunk weighs the same; a NaN is kept, so
    a broken model never ranks as best). ``mel``: the run's ``loss.mel``, so the mel distance
    that ranks "best" is the mel that is trained (None: the default spec).
    """
    was_training = codec.training
    codec.eval()
    accs = {n: metrics.MetricAccumulator() for n in n_quantizers}
    n_items, seconds = 0, 0.0
    examples: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    try:
        for key, audio, _meta in items:
            x = audio.to(device=device, dtype=torch.float32).reshape(1, 1, -1)
            n_items += 1
            seconds += x.shape[-1] / sample_rate
            energy_in = metrics.band_energies(x, sample_rate)[0]
            for n in n_quantizers:
                y = codec(x, n_quantizers=n).audio.float()
                rep = metrics.reconstruction_report(x, y, sample_rate, mel)
                vals = {k: v[0].item() for k, v in rep.items()}
                accs[n].add({**vals, "est_min": y.min().item(), "est_max": y.max().item()})
                accs[n].add_band_energies(energy_in, metrics.band_energies(y, sample_rate)[0])
                if n == max(n_quantizers) and len(examples) < audio_examples:
                    examples.append((key, x[0].cpu(), y[0].cpu()))
    finally:
        codec.train(was_training)
    if n_items == 0:
        raise RuntimeError("validation split is empty: nothing to validate")
    per = []
    for n in n_quantizers:
        mean = accs[n].result()
        per.append(
            BitrateResult(
                n_quantizers=n,
                kbps=kbps_of[n],
                diagnosis=metrics.diagnose(
                    mean["rms_ratio"], mean["waveform_corr"], mean["envelope_corr"]
                ),
                band_levels=accs[n].band_levels(metrics.band_names(sample_rate)),
                **mean,
            )
        )
    return ValidationResult(items=n_items, seconds=seconds, per_bitrate=per, examples=examples)


def mel_image(x: torch.Tensor, y: torch.Tensor, sample_rate: int):
    """A matplotlib figure with input and output log-mel spectrograms (for W&B)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=1024, hop_length=256, n_mels=80
    )
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, sig, title in ((axes[0], x, "input"), (axes[1], y, "output")):
        m = torch.log10(mel(sig.float().reshape(1, -1)).clamp_min(1e-5))[0]
        ax.imshow(m.numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(title)
    fig.tight_layout()
    return fig
