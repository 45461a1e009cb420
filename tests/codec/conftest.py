"""Shared fixtures for the codec tests: generated audio and tiny model configs."""

from __future__ import annotations

import math

import pytest
import torch

from codec.config import CodecConfig, DiscriminatorConfig

SR = 16000


def speech_like(
    seconds: float, sample_rate: int = SR, seed: int = 0, batch: int = 1
) -> torch.Tensor:
    """``[batch, 1, T]`` voiced-speech stand-in at about -20 dBFS RMS.

    A harmonic source (f0 gliding 110..190 Hz, harmonics falling 6 dB/octave, two formant
    bumps) under a 4 Hz syllable envelope with short pauses, plus a -60 dBFS noise floor.
    """
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    out = []
    for _ in range(batch):
        f0_lo = 110 + 30 * torch.rand((), generator=g).item()
        f0 = f0_lo + 80 * (0.5 + 0.5 * torch.sin(2 * math.pi * 1.3 * t))
        phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
        x = torch.zeros(n)
        for k in range(1, 30):
            fk = k * f0
            formants = (
                1
                + 2 * torch.exp(-(((fk - 500) / 200) ** 2))
                + torch.exp(-(((fk - 1500) / 300) ** 2))
            )
            alive = (fk < sample_rate / 2 - 200).float()
            x = x + alive * formants / k * torch.sin(k * phase + 6.28 * torch.rand((), generator=g))
        syll = torch.sin(math.pi * 4 * t + torch.rand((), generator=g) * 6.28).clamp_min(0) ** 1.5
        x = x * syll
        x = 0.1 * x / x.pow(2).mean().sqrt()
        x = x + 1e-3 * torch.randn(n, generator=g)
        out.append(x)
    return torch.stack(out)[:, None]


@pytest.fixture
def make_speech():
    return speech_like


# Tiny versions of the presets, sized for test speed; hop stays 320 (50 frames/s).
DEBUG_CODEC = dict(encoder_dim=8, decoder_dim=32, n_codebooks=4, codebook_size=64)
DEBUG_DISC = dict(mpd_channels=(4, 8, 16, 16, 16), stft_channels=4)


@pytest.fixture
def debug_codec_cfg() -> CodecConfig:
    return CodecConfig(**DEBUG_CODEC)


@pytest.fixture
def debug_disc_cfg() -> DiscriminatorConfig:
    return DiscriminatorConfig(**DEBUG_DISC)


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seed, and run on one intra-op thread.

    These models are tiny, so one thread is as fast as two when the machine is idle; when
    another process is busy on a 2-core machine, two OpenMP threads were measured 100x slower
    (6.4 s instead of 55 ms per debug step), which made the suite's run time unpredictable.
    """
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
