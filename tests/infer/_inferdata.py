"""Test data for the inference tests: speech-like audio, the tiny codec's settings, and one
long signal streamed through :func:`infer.batch.run` in blocks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from torch import nn

from infer.batch import run
from infer.blocks import audio_windows, code_windows, context_frames
from shards import synth

SR = 16000
# Tiny codec (hop 320 like production): 4 codebooks x 64 entries = 1.2 kbps.
TINY = dict(encoder_dim=4, decoder_dim=32, n_codebooks=4, codebook_size=64, codebook_dim=4)


def speech(seconds: float, rate: int = SR, seed: int = 0, rms: float = 0.05) -> np.ndarray:
    """Mono float32 speech-like audio (:func:`shards.synth.speech_like`) scaled to ``rms``."""
    x = synth.speech_like(seconds, rate, seed=seed).astype(np.float64)
    return (rms * x / np.sqrt(np.mean(x**2))).astype(np.float32)


def encode_stream(
    codec: nn.Module,
    blocks: Iterable[np.ndarray],
    n_quantizers: int,
    block_frames: int,
    context: int | None = None,
    gain: float = 1.0,
    batch_windows: int = 1,
) -> Iterator[np.ndarray]:
    """Codes of one long mono signal given as consecutive blocks (any sizes, float32).

    Yields ``[n_q, f]`` int64 arrays that concatenate to what ``codec.encode`` gives for the
    whole signal (``ceil(T / hop)`` frames). ``gain`` multiplies every sample first (the
    level step). ``context``: frames each side (None = :func:`context_frames`).
    """
    ctx = context if context is not None else context_frames(codec)[0]
    # tail=0: codec.encode's own frame count (ceil(T / hop)), which these helpers mirror
    wins = audio_windows(blocks, codec.hop_length, block_frames, ctx, gain, tail=0)
    for _, codes in run(codec, wins, batch_windows, n_quantizers):
        yield codes


def decode_stream(
    codec: nn.Module,
    codes: np.ndarray,
    block_frames: int,
    context: int | None = None,
    batch_windows: int = 1,
) -> Iterator[np.ndarray]:
    """Audio from codes ``[n_q, F]`` in blocks of ``block_frames * hop`` samples (float32,
    mono); they concatenate to ``codec.decode`` of the whole ``F`` frames
    (``codec.decoded_length(F)`` samples). ``context``: frames each side (None = :func:`context_frames`)."""
    ctx = context if context is not None else context_frames(codec)[1]
    for _, y in run(codec, code_windows(np.asarray(codes), block_frames, ctx), batch_windows):
        yield y
