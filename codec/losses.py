"""Generator and discriminator losses (DAC recipe plus optional waveform L1 and MR-STFT).

Spectral terms (mel, STFT) and the waveform term are computed in fp32 with autocast
disabled, through :mod:`codec.spectral`. Adversarial and feature-matching terms cast the
discriminator outputs to fp32 before reducing.

Conventions: audio ``[B, 1, T]``; discriminator outputs ``list[list[Tensor]]``, one inner list
per sub-discriminator, feature maps first and logits last (DAC).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.config import MelSpec
from codec.spectral import fp32_magnitude, fp32_stft, mel_spectrogram, no_autocast

DiscOutput = list[list[Tensor]]


def multiscale_mel_distance(
    ref: Tensor, est: Tensor, sample_rate: int, spec: MelSpec | None = None
) -> Tensor:
    """Per-item multi-scale log-mel L1 ``[B]`` between ``ref`` and ``est`` ``[B, 1, T]``.

    ``spec`` (:class:`codec.config.MelSpec`, DAC's 16 kHz recipe when None) gives the scales
    and the formula: for each (window, n_mels), ``log_weight * mean|log10(clamp(M_est)^pow)
    - log10(clamp(M_ref)^pow)| + mag_weight * mean|M_est - M_ref|`` over mels and frames,
    ``M`` a magnitude mel with a Hann window and hop ``window * hop_factor``; summed over
    scales (DAC's MelSpectrogramLoss with reduction per item). Units: log10 magnitude.
    """
    spec = MelSpec() if spec is None else spec
    if ref.shape != est.shape:
        raise ValueError(f"est: shape {tuple(est.shape)} != ref shape {tuple(ref.shape)}")
    with no_autocast(ref.device):
        ref = ref.float().reshape(ref.shape[0], -1)
        est = est.float().reshape(est.shape[0], -1)
        total = ref.new_zeros(ref.shape[0])
        for n_mel, win in zip(spec.n_mels, spec.window_lengths, strict=True):
            hop = max(1, int(win * spec.hop_factor))
            m_ref = mel_spectrogram(ref, sample_rate, win, hop, n_mel, spec.fmin, spec.fmax)
            m_est = mel_spectrogram(est, sample_rate, win, hop, n_mel, spec.fmin, spec.fmax)
            if spec.log_weight:
                l_ref = m_ref.clamp_min(spec.clamp_eps).pow(spec.pow).log10()
                l_est = m_est.clamp_min(spec.clamp_eps).pow(spec.pow).log10()
                total = total + spec.log_weight * (l_est - l_ref).abs().mean(dim=(1, 2))
            if spec.mag_weight:
                total = total + spec.mag_weight * (m_est - m_ref).abs().mean(dim=(1, 2))
        return total


class MultiScaleMelLoss(nn.Module):
    """Batch mean of :func:`multiscale_mel_distance` (fp32 scalar). ``forward(est, ref)``."""

    def __init__(self, sample_rate: int, spec: MelSpec | None = None):
        super().__init__()
        self.sample_rate = sample_rate
        self.spec = MelSpec() if spec is None else spec

    def forward(self, est: Tensor, ref: Tensor) -> Tensor:
        return multiscale_mel_distance(ref, est, self.sample_rate, self.spec).mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Parallel WaveGAN multi-resolution STFT loss (fp32 scalar). ``forward(est, ref)``.

    Per resolution: spectral convergence ``||S_ref| - |S_est||_F / ||S_ref||_F`` plus
    log-magnitude L1 ``mean|log|S_ref| - log|S_est||``; averaged over resolutions.
    Magnitudes use ``sqrt(max(re^2 + im^2, 1e-7))`` so gradients stay finite in silence.
    """

    def __init__(
        self,
        fft_sizes: tuple[int, ...] = (512, 1024, 2048),
        hop_sizes: tuple[int, ...] = (50, 120, 240),
        win_lengths: tuple[int, ...] = (240, 600, 1200),
    ):
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError("fft_sizes, hop_sizes, win_lengths: must have the same length")
        self.resolutions = list(zip(fft_sizes, hop_sizes, win_lengths, strict=True))

    def forward(self, est: Tensor, ref: Tensor) -> Tensor:
        with no_autocast(ref.device):
            ref = ref.float().reshape(ref.shape[0], -1)
            est = est.float().reshape(est.shape[0], -1)
            total = ref.new_zeros(())
            for n_fft, hop, win in self.resolutions:
                m_ref = fp32_magnitude(fp32_stft(ref, n_fft, hop, win), eps=1e-7)
                m_est = fp32_magnitude(fp32_stft(est, n_fft, hop, win), eps=1e-7)
                sc = torch.linalg.norm(m_ref - m_est) / torch.linalg.norm(m_ref).clamp_min(1e-7)
                log_mag = F.l1_loss(torch.log(m_est), torch.log(m_ref))
                total = total + sc + log_mag
            return total / len(self.resolutions)


def discriminator_loss(d_real: DiscOutput, d_fake: DiscOutput) -> Tensor:
    """Least-squares GAN loss for the discriminator (DAC):
    ``sum_k mean((1 - D_k(real))^2) + mean(D_k(fake)^2)`` over sub-discriminators ``k``."""
    loss = torch.zeros((), device=d_real[0][-1].device)
    for real, fake in zip(d_real, d_fake, strict=True):
        loss = loss + torch.mean((1 - real[-1].float()) ** 2) + torch.mean(fake[-1].float() ** 2)
    return loss


def generator_adversarial_loss(d_fake: DiscOutput) -> Tensor:
    """Least-squares GAN loss for the generator (DAC): ``sum_k mean((1 - D_k(fake))^2)``."""
    loss = torch.zeros((), device=d_fake[0][-1].device)
    for fake in d_fake:
        loss = loss + torch.mean((1 - fake[-1].float()) ** 2)
    return loss


def feature_matching_loss(d_real: DiscOutput, d_fake: DiscOutput) -> Tensor:
    """Sum over sub-discriminators and layers (logits excluded) of the mean L1 between
    fake and (detached) real feature maps (DAC)."""
    loss = torch.zeros((), device=d_fake[0][-1].device)
    for real, fake in zip(d_real, d_fake, strict=True):
        for r, f in zip(real[:-1], fake[:-1], strict=True):
            loss = loss + F.l1_loss(f.float(), r.detach().float())
    return loss


class GeneratorLoss(nn.Module):
    """Weighted sum of the generator's loss terms.

    ``forward(audio_in, audio_out, codec_out, d_real=None, d_fake=None) -> (total, terms)``
    where ``audio_*`` are ``[B, 1, T]``, ``codec_out`` is a :class:`codec.generator.CodecOutput`
    (its ``commitment_loss`` and ``codebook_loss`` are used), ``d_real``/``d_fake`` are the
    discriminator outputs on real and generated audio (both None: GAN terms skipped, e.g.
    for a warm-up phase).

    ``terms`` maps names to *unweighted*, detached fp32 scalars: ``mel``, ``waveform_l1``
    (always; cheap and a useful level/phase monitor), ``codebook``, ``commitment``,
    ``stft`` (when its weight > 0), ``adversarial`` and ``feature_matching`` (when
    discriminator outputs are given). ``total`` (fp32, with graph) = sum of weight * term.
    """

    def __init__(
        self,
        *,
        mel_loss: MultiScaleMelLoss,
        stft_loss: MultiResolutionSTFTLoss | None = None,
        mel_weight: float = 15.0,
        feature_matching_weight: float = 2.0,
        adversarial_weight: float = 1.0,
        codebook_weight: float = 1.0,
        commitment_weight: float = 0.25,
        waveform_l1_weight: float = 0.0,
        stft_weight: float = 0.0,
    ):
        super().__init__()
        if stft_weight > 0 and stft_loss is None:
            raise ValueError("stft_loss: required when stft_weight > 0")
        self.mel_loss = mel_loss
        self.stft_loss = stft_loss
        self.weights = {
            "mel": mel_weight,
            "feature_matching": feature_matching_weight,
            "adversarial": adversarial_weight,
            "codebook": codebook_weight,
            "commitment": commitment_weight,
            "waveform_l1": waveform_l1_weight,
            "stft": stft_weight,
        }

    def forward(
        self,
        audio_in: Tensor,
        audio_out: Tensor,
        codec_out,
        d_real: DiscOutput | None = None,
        d_fake: DiscOutput | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if (d_real is None) != (d_fake is None):
            raise ValueError("d_real, d_fake: give both discriminator outputs or neither")
        raw: dict[str, Tensor] = {}
        with no_autocast(audio_in.device):
            raw["mel"] = self.mel_loss(audio_out, audio_in)
            raw["waveform_l1"] = F.l1_loss(audio_out.float(), audio_in.float())
            if self.weights["stft"] > 0:
                assert self.stft_loss is not None
                raw["stft"] = self.stft_loss(audio_out, audio_in)
        raw["codebook"] = codec_out.codebook_loss.float()
        raw["commitment"] = codec_out.commitment_loss.float()
        if d_fake is not None and d_real is not None:
            raw["adversarial"] = generator_adversarial_loss(d_fake)
            raw["feature_matching"] = feature_matching_loss(d_real, d_fake)
        total = sum(self.weights[k] * v for k, v in raw.items() if self.weights[k] != 0)
        if not isinstance(total, Tensor):  # every weight zero
            total = raw["mel"] * 0.0
        return total, {k: v.detach() for k, v in raw.items()}
