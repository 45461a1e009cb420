"""Shared fixtures for the codec tests: generated audio and tiny model configs."""

from __future__ import annotations

import pytest
import torch

from codec.config import CodecConfig, DiscriminatorConfig
from shards import synth

SR = 16000


def speech_like(
    seconds: float, sample_rate: int = SR, seed: int = 0, batch: int = 1
) -> torch.Tensor:
    """``[batch, 1, T]`` speech stand-in (:func:`shards.synth.speech_like`, the project's one
    generator) at -20 dBFS RMS per item.

    Item ``b`` uses synth seed ``1000 * seed + b`` so the items of one batch differ and
    batches drawn with different small seeds share no item. The level is set by RMS rather
    than synth's peak because the metric and loss tests reason in signal power.
    """
    items = []
    for b in range(batch):
        x = torch.from_numpy(synth.speech_like(seconds, sample_rate, seed=1000 * seed + b))
        items.append(x * (0.1 / x.double().pow(2).mean().sqrt()).float())
    return torch.stack(items)[:, None]


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
