"""Test data for the inference tests: speech-like audio and the tiny codec's settings."""

from __future__ import annotations

import numpy as np

from shards import synth

SR = 16000
# Tiny codec (hop 320 like production): 4 codebooks x 64 entries = 1.2 kbps.
TINY = dict(encoder_dim=4, decoder_dim=32, n_codebooks=4, codebook_size=64, codebook_dim=4)


def speech(seconds: float, rate: int = SR, seed: int = 0, rms: float = 0.05) -> np.ndarray:
    """Mono float32 speech-like audio (:func:`shards.synth.speech_like`) scaled to ``rms``."""
    x = synth.speech_like(seconds, rate, seed=seed).astype(np.float64)
    return (rms * x / np.sqrt(np.mean(x**2))).astype(np.float32)
