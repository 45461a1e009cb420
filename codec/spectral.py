"""fp32 spectral helpers: every STFT, magnitude and mel projection in TeluCodec goes here.

Each function casts its input to float32 and runs with autocast disabled for the input's
device type, whatever precision the caller trains in. bf16 has an 8-bit mantissa: its
STFT magnitudes are off by ~0.4% per bin, which dwarfs late-training mel-loss differences,
and the log of small bf16 magnitudes is coarse. Windows and mel filterbanks are cached per
(parameters, device).
"""

from __future__ import annotations

import functools

import torch
import torchaudio
from torch import Tensor


def no_autocast(device: torch.device):
    """Context manager disabling autocast for ``device``'s type (``cuda``, ``cpu``, ...)."""
    return torch.autocast(device_type=device.type, enabled=False)


@functools.lru_cache(maxsize=64)
def _window(kind: str, length: int, device: str) -> Tensor:
    if kind == "hann":
        return torch.hann_window(length, periodic=True, dtype=torch.float32, device=device)
    if kind == "sqrt_hann":
        return torch.hann_window(length, periodic=True, dtype=torch.float32, device=device).sqrt()
    raise ValueError(f"window: unknown kind {kind!r} (expected 'hann' or 'sqrt_hann')")


def _flatten(x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """``[..., T]`` -> ``[N, T]`` fp32 plus the leading shape to restore."""
    lead = tuple(x.shape[:-1])
    return x.float().reshape(-1, x.shape[-1]), lead


def fp32_stft(
    x: Tensor,
    n_fft: int,
    hop: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "reflect",
) -> Tensor:
    """Complex STFT ``[..., n_fft // 2 + 1, frames]`` (complex64) of ``x`` ``[..., T]``.

    Frames: ``1 + T // hop`` when ``center`` (reflect padding needs ``T > n_fft // 2``).
    """
    win_length = n_fft if win_length is None else win_length
    if center and pad_mode == "reflect" and x.shape[-1] <= n_fft // 2:
        raise ValueError(
            f"audio: {x.shape[-1]} samples is too short for an STFT of size {n_fft} "
            f"(needs more than {n_fft // 2})"
        )
    with no_autocast(x.device):
        flat, lead = _flatten(x)
        spec = torch.stft(
            flat,
            n_fft=n_fft,
            hop_length=hop,
            win_length=win_length,
            window=_window(window, win_length, str(x.device)),
            center=center,
            pad_mode=pad_mode,
            return_complex=True,
        )
        return spec.reshape(*lead, *spec.shape[-2:])


def fp32_magnitude(spec: Tensor, eps: float = 0.0) -> Tensor:
    """``|spec|`` in fp32; with ``eps > 0`` computed as ``sqrt(max(re^2 + im^2, eps))`` so the
    gradient stays finite at zero (Parallel WaveGAN's choice)."""
    with no_autocast(spec.device):
        if eps > 0:
            power = spec.real.float().pow(2) + spec.imag.float().pow(2)
            return power.clamp_min(eps).sqrt()
        return spec.abs().float()


@functools.lru_cache(maxsize=64)
def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    device: str = "cpu",
) -> Tensor:
    """Mel matrix ``[n_fft // 2 + 1, n_mels]`` (fp32), Slaney scale and area normalisation.

    Slaney/Slaney is librosa's default, which audiotools (DAC's mel loss) uses.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fb = torchaudio.functional.melscale_fbanks(
        n_freqs=n_fft // 2 + 1,
        f_min=float(fmin),
        f_max=float(fmax),
        n_mels=n_mels,
        sample_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return fb.to(device=device, dtype=torch.float32)


def mel_spectrogram(
    x: Tensor,
    sample_rate: int,
    n_fft: int,
    hop: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    power: float = 1.0,
) -> Tensor:
    """Mel spectrogram ``[..., n_mels, frames]`` (fp32) of ``x`` ``[..., T]``.

    Hann window of ``n_fft`` samples, ``center=True``; ``power=1`` is a magnitude mel (DAC),
    ``power=2`` a power mel.
    """
    with no_autocast(x.device):
        mag = fp32_stft(x, n_fft=n_fft, hop=hop).abs()
        if power != 1.0:
            mag = mag.pow(power)
        fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, str(x.device))
        return (mag.transpose(-1, -2) @ fb).transpose(-1, -2)
