"""Reconstruction metrics shared by the validation hook and the eval command.

All take ``ref`` (the input) and ``est`` (the reconstruction) as ``[B, T]`` or ``[B, 1, T]``
with equal shapes, run in fp32 with autocast off, and return one value per item ``[B]``.

The phase-coherence diagnostic separates the two ways an early codec fails:

* a *phase problem*: the output has the right energy envelope and spectrum but its
  waveform is uncorrelated with the input (mel losses are phase-blind), so SNR sits near
  0 dB however good the spectrogram looks;
* a *level problem*: the output is too quiet or too loud overall (waveform losses reward
  shrinking an uncorrelated output towards zero; BENCHMARKS.md has the ratios seen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from codec.config import MelSpec
from codec.losses import MultiResolutionSTFTLoss, multiscale_mel_distance
from codec.spectral import no_autocast

# A perfect reconstruction has zero error; eps keeps the log finite: SNR of an exact copy is
# 10*log10(signal energy / 1e-10) (e.g. ~140 dB for 1 s of speech at -20 dBFS).
ENERGY_EPS = 1e-10

# diagnose() thresholds.
# Level: outside +-3 dB (RMS ratio 10**(-3/20) = 0.708 .. 10**(3/20) = 1.413) is a clearly
# audible loudness change; a healthy codec stays within ~1 dB of its input.
RMS_RATIO_LOW = 10 ** (-3 / 20)
RMS_RATIO_HIGH = 10 ** (3 / 20)
# Phase: the envelope is reproduced (Pearson > 0.7 over 10 ms frames) while the samples are
# not (Pearson < 0.3, i.e. < 10% of the variance explained; a waveform correlation r caps the
# gain-optimal SNR at -10*log10(1 - r^2), so r < 0.3 means < 0.4 dB).
ENVELOPE_CORR_MIN = 0.7
WAVEFORM_CORR_MAX = 0.3

DIAGNOSES = (
    "ok",
    "level problem",
    "phase problem",
    "level and phase problem",
    "envelope problem",
    "level and envelope problem",
)


def _flat(x: Tensor) -> Tensor:
    if x.dim() == 3:
        if x.shape[1] != 1:
            raise ValueError(f"expected mono [B, 1, T], got {tuple(x.shape)}")
        x = x[:, 0]
    if x.dim() != 2:
        raise ValueError(f"expected [B, T] or [B, 1, T], got {tuple(x.shape)}")
    return x.float()


def _pair(ref: Tensor, est: Tensor) -> tuple[Tensor, Tensor]:
    if ref.shape != est.shape:
        raise ValueError(f"est: shape {tuple(est.shape)} != ref shape {tuple(ref.shape)}")
    return _flat(ref), _flat(est)


def snr_db(ref: Tensor, est: Tensor) -> Tensor:
    """``10 log10(sum ref^2 / sum (ref - est)^2)`` per item, dB (``ENERGY_EPS`` in both)."""
    with no_autocast(ref.device):
        ref, est = _pair(ref, est)
        signal = ref.pow(2).sum(-1)
        noise = (ref - est).pow(2).sum(-1)
        return 10 * torch.log10((signal + ENERGY_EPS) / (noise + ENERGY_EPS))


def si_snr_db(ref: Tensor, est: Tensor) -> Tensor:
    """Scale-invariant SNR per item, dB: both signals made zero-mean, ``target`` = projection
    of ``est`` on ``ref``, ``10 log10(|target|^2 / |est - target|^2)``. An exact (or scaled)
    copy gives a very large value bounded by ``ENERGY_EPS`` rather than infinity."""
    with no_autocast(ref.device):
        ref, est = _pair(ref, est)
        ref = ref - ref.mean(-1, keepdim=True)
        est = est - est.mean(-1, keepdim=True)
        scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + ENERGY_EPS)
        target = scale * ref
        noise = est - target
        return 10 * torch.log10(
            (target.pow(2).sum(-1) + ENERGY_EPS) / (noise.pow(2).sum(-1) + ENERGY_EPS)
        )


def mel_distance(ref: Tensor, est: Tensor, sample_rate: int, spec: MelSpec | None = None) -> Tensor:
    """Multi-scale log10-mel L1 per item, the training mel loss's definition
    (:func:`codec.losses.multiscale_mel_distance`): pass the run's ``loss.mel`` so it
    measures the mel that is trained (None: DAC's 16 kHz recipe, the default spec)."""
    ref, est = _pair(ref, est)
    return multiscale_mel_distance(ref[:, None], est[:, None], sample_rate, spec)


def stft_distance(ref: Tensor, est: Tensor) -> Tensor:
    """Multi-resolution STFT distance per item: the training MR-STFT loss's definition
    (:class:`codec.losses.MultiResolutionSTFTLoss`, Parallel WaveGAN resolutions; spectral
    convergence + log-magnitude L1, averaged over resolutions), one value per item."""
    ref, est = _pair(ref, est)
    loss = MultiResolutionSTFTLoss()
    return torch.stack([loss(est[i : i + 1], ref[i : i + 1]) for i in range(ref.shape[0])])


def rms(x: Tensor) -> Tensor:
    """Root mean square per item (linear full-scale units)."""
    with no_autocast(x.device):
        return _flat(x).pow(2).mean(-1).sqrt()


def rms_ratio(ref: Tensor, est: Tensor) -> Tensor:
    """``rms(est) / rms(ref)`` per item (1.0 = same level; 0.5 = 6 dB too quiet)."""
    ref, est = _pair(ref, est)
    return rms(est) / rms(ref).clamp_min(1e-12)


# Level by frequency band: where a codec loses (or adds) energy. Octaves from 60 Hz; the
# first band is below speech (rumble), 60-120 and 120-250 Hz hold the fundamental of male and
# female voices. A codec whose overall level is low can be missing one band almost entirely
# (BENCHMARKS.md: an early CPU-trained model and the voice fundamental).
BAND_EDGES_HZ = (0, 60, 120, 250, 500, 1000, 2000, 4000, 8000, 16000)


def bands(sample_rate: int) -> list[tuple[float, float]]:
    """The ``(low, high)`` Hz bands of :data:`BAND_EDGES_HZ` below Nyquist (the last one
    ends at Nyquist)."""
    nyq = sample_rate / 2
    lows = [e for e in BAND_EDGES_HZ[:-1] if e < nyq]
    highs = [min(e, nyq) for e in BAND_EDGES_HZ[1 : len(lows) + 1]]
    highs[-1] = nyq
    return list(zip(lows, highs, strict=True))


def band_names(sample_rate: int) -> list[str]:
    return [f"{lo:g}-{hi:g}Hz" for lo, hi in bands(sample_rate)]


def band_energies(x: Tensor, sample_rate: int) -> Tensor:
    """``[B, n_bands]`` energy (sum of the squared spectrum magnitude) per :func:`bands`."""
    with no_autocast(x.device):
        x = _flat(x)
        power = torch.fft.rfft(x).abs().pow(2)
        freqs = torch.fft.rfftfreq(x.shape[-1], 1 / sample_rate, device=x.device)
        out = []
        for i, (lo, hi) in enumerate(bands(sample_rate)):
            last = i == len(bands(sample_rate)) - 1
            mask = (freqs >= lo) & ((freqs <= hi) if last else (freqs < hi))
            out.append(power[:, mask].sum(-1))
        return torch.stack(out, -1)


def band_level_ratios(ref_energy: Tensor, est_energy: Tensor) -> Tensor:
    """Output/input RMS level per band from :func:`band_energies` (summed over as many
    items as wanted first: per-item ratios of near-empty bands are noise)."""
    return (est_energy / ref_energy.clamp_min(ENERGY_EPS)).sqrt()


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation along the last axis (0 when either side is constant)."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    denom = (a.pow(2).sum(-1) * b.pow(2).sum(-1)).sqrt()
    return (a * b).sum(-1) / denom.clamp_min(1e-20)


def frame_rms(x: Tensor, sample_rate: int, frame_ms: float = 20.0, hop_ms: float = 10.0) -> Tensor:
    """RMS envelope ``[B, frames]`` of ``x`` ``[B, T]``: ``frame_ms`` windows every ``hop_ms``."""
    frame = max(1, round(sample_rate * frame_ms / 1000))
    hop = max(1, round(sample_rate * hop_ms / 1000))
    if x.shape[-1] < frame:
        raise ValueError(f"audio: {x.shape[-1]} samples is shorter than one {frame_ms} ms frame")
    return x.unfold(-1, frame, hop).pow(2).mean(-1).sqrt()


def phase_coherence(ref: Tensor, est: Tensor, sample_rate: int) -> dict[str, Tensor]:
    """Waveform vs envelope agreement, per item.

    Returns ``waveform_corr`` (Pearson of the samples: sensitive to phase) and
    ``envelope_corr`` (Pearson of the RMS envelopes in 20 ms frames every 10 ms: blind to
    phase), both ``[B]`` in [-1, 1].
    """
    with no_autocast(ref.device):
        ref, est = _pair(ref, est)
        return {
            "waveform_corr": pearson(ref, est),
            "envelope_corr": pearson(frame_rms(ref, sample_rate), frame_rms(est, sample_rate)),
        }


def diagnose(rms_ratio: float, waveform_corr: float, envelope_corr: float) -> str:
    """Name what is wrong with a reconstruction (thresholds are the module constants).

    * level problem: ``rms_ratio`` outside [0.708, 1.413] (+-3 dB);
    * phase problem: ``envelope_corr > 0.7`` but ``waveform_corr < 0.3`` (right envelope,
      wrong waveform);
    * envelope problem: ``waveform_corr < 0.3`` and ``envelope_corr <= 0.7`` (not even the
      envelope is reproduced; e.g. an untrained model) -- added to the four asked-for
      outcomes so such output is never reported as "ok";
    * combinations read ``"level and phase problem"`` / ``"level and envelope problem"``.

    Returns one of :data:`DIAGNOSES`. Accepts floats or 0-d tensors; NaN counts as a failure.
    """
    r, w, e = (float(v) for v in (rms_ratio, waveform_corr, envelope_corr))
    level_bad = not (RMS_RATIO_LOW <= r <= RMS_RATIO_HIGH)  # NaN -> bad
    waveform_bad = not (w >= WAVEFORM_CORR_MAX)
    envelope_ok = e > ENVELOPE_CORR_MIN
    shape = None
    if waveform_bad:
        shape = "phase" if envelope_ok else "envelope"
    if level_bad and shape:
        return f"level and {shape} problem"
    if level_bad:
        return "level problem"
    if shape:
        return f"{shape} problem"
    return "ok"


def reconstruction_report(
    ref: Tensor, est: Tensor, sample_rate: int, mel: MelSpec | None = None
) -> dict[str, Tensor]:
    """All per-item metrics at once (``[B]`` tensors): snr_db, si_snr_db, mel_distance
    (of the spec ``mel``, see :func:`mel_distance`), rms_ratio, waveform_corr, envelope_corr,
    and peak levels of both sides (``ref_peak``, ``est_peak``, linear full scale)."""
    pc = phase_coherence(ref, est, sample_rate)
    ref_f, est_f = _pair(ref, est)
    return {
        "snr_db": snr_db(ref, est),
        "si_snr_db": si_snr_db(ref, est),
        "mel_distance": mel_distance(ref, est, sample_rate, mel),
        "rms_ratio": rms_ratio(ref, est),
        "waveform_corr": pc["waveform_corr"],
        "envelope_corr": pc["envelope_corr"],
        "ref_peak": ref_f.abs().amax(-1),
        "est_peak": est_f.abs().amax(-1),
    }


# How per-clip values combine into one figure for a set of clips (MetricAccumulator): the
# largest peak, the lowest minimum sample; every other metric is a weighted mean.
MAX_KEYS = frozenset({"ref_peak", "est_peak", "est_max"})
MIN_KEYS = frozenset({"est_min"})


class MetricAccumulator:
    """Combines per-clip metrics (``{name: float}``, :func:`reconstruction_report`'s names)
    over clips, the one way validation and ``telucodec-eval`` both do it.

    Means are weighted by ``weight`` (1 per validation chunk, samples per eval piece);
    :data:`MAX_KEYS` take the largest value, :data:`MIN_KEYS` the smallest. With
    ``skip_undefined`` a NaN is left out of its mean and counted in :attr:`undefined` (eval:
    PESQ and STOI are undefined on clips too short or silent to score); without it a NaN
    propagates, so a model that outputs NaN cannot look good (validation ranks "best").
    Band energies (:func:`band_energies`) are summed over clips before the level ratio.
    """

    def __init__(self, skip_undefined: bool = False):
        self.skip_undefined = skip_undefined
        self.clips = 0
        self.undefined: dict[str, int] = {}
        self._sum: dict[str, float] = {}
        self._weight: dict[str, float] = {}
        self._extreme: dict[str, float] = {}
        self._energy_ref: Tensor | None = None
        self._energy_est: Tensor | None = None

    def add(self, values: Mapping[str, float], weight: float = 1.0) -> None:
        """One clip's metrics; ``weight`` counts in every mean (e.g. its duration)."""
        self.clips += 1
        for k, v in values.items():
            v = float(v)
            if k in MAX_KEYS or k in MIN_KEYS:
                pick = max if k in MAX_KEYS else min
                self._extreme[k] = pick(self._extreme[k], v) if k in self._extreme else v
                continue
            self._sum.setdefault(k, 0.0)
            self._weight.setdefault(k, 0.0)
            if self.skip_undefined and math.isnan(v):
                self.undefined[k] = self.undefined.get(k, 0) + 1
                continue
            self._sum[k] += weight * v
            self._weight[k] += weight

    def add_band_energies(self, ref: Sequence[float] | Tensor, est: Sequence[float] | Tensor):
        """One clip's ``[n_bands]`` energies of input and output (summed, float64)."""
        r = torch.as_tensor(ref, dtype=torch.float64).cpu()
        e = torch.as_tensor(est, dtype=torch.float64).cpu()
        self._energy_ref = r if self._energy_ref is None else self._energy_ref + r
        self._energy_est = e if self._energy_est is None else self._energy_est + e

    def result(self) -> dict[str, float]:
        """Every metric seen: its weighted mean (NaN when no clip defined it) or extreme."""
        out = {k: self._sum[k] / w if (w := self._weight[k]) > 0 else math.nan for k in self._sum}
        out.update(self._extreme)
        return out

    def band_energy_sums(self) -> tuple[list[float], list[float]]:
        """Summed ``(input, output)`` band energies of every clip added."""
        if self._energy_ref is None or self._energy_est is None:
            raise ValueError("no band energies were added")
        return self._energy_ref.tolist(), self._energy_est.tolist()

    def band_levels(self, names: Sequence[str]) -> dict[str, float]:
        """Output/input RMS level per band over all clips' energies (:func:`band_level_ratios`)."""
        if self._energy_ref is None or self._energy_est is None:
            raise ValueError("no band energies were added")
        ratios = band_level_ratios(self._energy_ref, self._energy_est).tolist()
        return dict(zip(names, ratios, strict=True))
