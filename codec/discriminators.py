"""Discriminators (DAC): multi-period (MPD) and multi-resolution multi-band complex STFT.

Every sub-discriminator returns a list of feature maps whose last entry is the logits map;
:class:`Discriminator` returns one such list per sub-discriminator (MPDs first, then one
complex-STFT discriminator per FFT size).

The complex spectrogram is computed in fp32 with autocast disabled (:func:`fp32_stft`); the
conv stack that follows runs in whatever precision the caller chose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.config import DAC_BANDS
from codec.layers import WNConv2d
from codec.spectral import fp32_stft

LEAK = 0.1  # DAC / HiFi-GAN LeakyReLU slope


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN/DAC MPD for one period ``p``: ``[B, 1, T]`` folded to ``[B, 1, T/p, p]`` and
    processed by 2D convs with ``(5, 1)`` kernels (each column sees every ``p``-th sample)."""

    def __init__(self, period: int, channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)):
        super().__init__()
        self.period = period
        convs, in_ch = [], 1
        for i, ch in enumerate(channels):
            # DAC: stride 3 in time on all but the last conv.
            stride = (3, 1) if i < len(channels) - 1 else (1, 1)
            convs.append(WNConv2d(in_ch, ch, (5, 1), stride, padding=(2, 0)))
            in_ch = ch
        self.convs = nn.ModuleList(convs)
        self.conv_post = WNConv2d(in_ch, 1, (3, 1), padding=(1, 0))

    def forward(self, x: Tensor) -> list[Tensor]:
        t = x.shape[-1]
        pad = (-t) % self.period
        if pad:
            # Reflect needs pad < T; tiny inputs fall back to zero padding.
            x = F.pad(x, (0, pad), mode="reflect" if pad < t else "constant")
        x = x.reshape(x.shape[0], x.shape[1], -1, self.period)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAK)
            fmap.append(x)
        fmap.append(self.conv_post(x))
        return fmap


class ComplexSTFTDiscriminator(nn.Module):
    """DAC's MRD for one window length: complex STFT as (real, imag) channels, split into
    frequency bands, each band through its own conv stack, re-joined for a final conv.

    Input ``[B, 1, T]``; the STFT ``[B, 2, frames, bins]`` (Hann, hop ``window * hop_factor``,
    centred) is computed in fp32 with autocast off.
    """

    def __init__(
        self,
        window_length: int,
        hop_factor: float = 0.25,
        bands: tuple[tuple[float, float], ...] = DAC_BANDS,
        channels: int = 32,
    ):
        super().__init__()
        self.window_length = window_length
        self.hop_length = max(1, int(window_length * hop_factor))
        n_bins = window_length // 2 + 1
        self.bands = [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]
        ch = channels

        def stack() -> nn.ModuleList:
            # DAC: (3, 9) kernels over (time, frequency), stride 2 along frequency.
            return nn.ModuleList(
                [
                    WNConv2d(2, ch, (3, 9), (1, 1), padding=(1, 4)),
                    WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                    WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                    WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                    WNConv2d(ch, ch, (3, 3), (1, 1), padding=(1, 1)),
                ]
            )

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.conv_post = WNConv2d(ch, 1, (3, 3), (1, 1), padding=(1, 1))

    def spectrogram(self, x: Tensor) -> list[Tensor]:
        """Bands of the fp32 complex STFT, each ``[B, 2, frames, band bins]``."""
        spec = fp32_stft(x[:, 0], self.window_length, self.hop_length)  # [B, bins, frames]
        spec = torch.view_as_real(spec).permute(0, 3, 2, 1)  # [B, 2, frames, bins]
        return [spec[..., lo:hi] for lo, hi in self.bands]

    def forward(self, x: Tensor) -> list[Tensor]:
        fmap, outs = [], []
        for band, convs in zip(self.spectrogram(x), self.band_convs, strict=True):
            for conv in convs:
                band = F.leaky_relu(conv(band), LEAK)
                fmap.append(band)
            outs.append(band)
        fmap.append(self.conv_post(torch.cat(outs, dim=-1)))
        return fmap


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period."""

    def __init__(self, periods: tuple[int, ...], channels: tuple[int, ...]):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        return [d(x) for d in self.discriminators]


class MultiBandComplexSTFTDiscriminator(nn.Module):
    """One :class:`ComplexSTFTDiscriminator` per FFT size."""

    def __init__(
        self,
        fft_sizes: tuple[int, ...],
        hop_factor: float,
        bands: tuple[tuple[float, float], ...],
        channels: int,
    ):
        super().__init__()
        self.discriminators = nn.ModuleList(
            ComplexSTFTDiscriminator(n, hop_factor, bands, channels) for n in fft_sizes
        )

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        return [d(x) for d in self.discriminators]


class Discriminator(nn.Module):
    """MPD + multi-band complex-STFT discriminator on audio ``[B, 1, T]``.

    ``forward`` returns ``len(periods) + len(fft_sizes)`` lists of feature maps (logits last).
    Input conditioning: optional DC removal (DAC) and optional peak normalisation to 0.8
    (DAC; off by default, see :class:`codec.config.DiscriminatorConfig`).
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        periods: tuple[int, ...] = (2, 3, 5, 7, 11),
        fft_sizes: tuple[int, ...] = (1024, 512, 256),
        hop_factor: float = 0.25,
        bands: tuple[tuple[float, float], ...] = DAC_BANDS,
        mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024),
        stft_channels: int = 32,
        remove_dc: bool = True,
        peak_normalize: bool = False,
    ):
        super().__init__()
        self.sample_rate = sample_rate
        self.remove_dc = remove_dc
        self.peak_normalize = peak_normalize
        self.mpd = MultiPeriodDiscriminator(tuple(periods), tuple(mpd_channels))
        self.mrd = MultiBandComplexSTFTDiscriminator(
            tuple(fft_sizes), hop_factor, tuple(bands), stft_channels
        )

    @property
    def n_subdiscriminators(self) -> int:
        return len(self.mpd.discriminators) + len(self.mrd.discriminators)

    def forward(self, audio: Tensor) -> list[list[Tensor]]:
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio: expected shape [B, 1, T], got {tuple(audio.shape)}")
        if self.remove_dc:
            audio = audio - audio.mean(dim=-1, keepdim=True)
        if self.peak_normalize:
            audio = 0.8 * audio / (audio.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return self.mpd(audio) + self.mrd(audio)
