"""Cutting arbitrarily long audio (or codes) into overlapping windows: no seams, bounded memory.

The codec is fully convolutional: a latent frame depends on a finite stretch of input
samples around it (the encoder's receptive field) and an output sample on a finite stretch
of frames (the decoder's). So a long signal is processed in windows of ``block_frames``
frames, each extended by a *context* of at least that receptive field on both sides, and
only the window's core is kept. Windows start on multiples of the hop, so every
convolution sees the same sample grid, the same neighbours and (at the file's ends) the
same zero padding as in one whole-file pass: the cores are the whole-file result up to
floating-point summation order. Nothing is cross-faded because nothing differs.

This module only plans windows (numpy, no model); :mod:`infer.batch` runs them, several
per forward pass, padding the shorter ones so their results are unchanged.

Tolerance (tested in tests/infer/test_infer_blocks.py, debug codec): blocked and
whole-file codes are identical; decoding the same codes blocked vs whole differs by less
than 1e-5 of full scale. (Codes could in principle differ where a latent sits within float
rounding of two codewords' tie; none observed in the tests.)

Memory: a window is ``block_frames + 2 * context`` frames; the planner holds at most one
window of input beyond the current one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from torch import nn

# 5 s: ~10 % context overhead with the production preset (14 decoder / 10 encoder frames of
# context per side on 250 frames); activations of one window set the peak memory.
DEFAULT_BLOCK_SECONDS = 5.0


def _one_sided(conv: nn.Conv1d) -> int:
    """Largest one-sided reach of a (non-transposed) conv, in its input positions."""
    k, d, p = conv.kernel_size[0], conv.dilation[0], conv.padding[0]
    span = (k - 1) * d
    return max(p, span - p)


def encoder_reach(encoder: nn.Module) -> int:
    """Upper bound, in input samples, on how far from a frame's centre an input sample can
    still change that frame (sum of every conv's one-sided reach at its input rate)."""
    reach, scale = 0, 1
    for m in encoder.modules():
        if isinstance(m, nn.Conv1d):
            reach += _one_sided(m) * scale
            scale *= m.stride[0]
    return reach


def decoder_reach(decoder: nn.Module, hop: int) -> int:
    """Upper bound, in output samples, on how far from an output sample a frame can be and
    still change it. ``hop``: output samples per input frame."""
    reach, scale = 0, hop  # output samples per position at the current layer's input
    for m in decoder.modules():
        if isinstance(m, nn.ConvTranspose1d):
            k, s = m.kernel_size[0], m.stride[0]
            # output j reads inputs i with i*s - p <= j <= i*s - p + k - 1: within
            # ceil(k / s) + 1 input positions of j / s on either side
            reach += (math.ceil(k / s) + 1) * scale
            scale //= s
        elif isinstance(m, nn.Conv1d):
            reach += _one_sided(m) * scale
    return reach


def context_frames(codec: nn.Module) -> tuple[int, int]:
    """(encoder, decoder) context in frames, each side: the receptive-field bounds rounded up
    to whole frames, plus one frame of margin."""
    hop = codec.hop_length
    enc = math.ceil(encoder_reach(codec.encoder) / hop) + 1
    dec = math.ceil(decoder_reach(codec.decoder, hop) / hop) + 1
    return enc, dec


@dataclass
class Window:
    """One processing window of item ``key`` (a file, a signal).

    data: encode: mono float32 samples from frame ``lo`` of the item (``frames * hop``
        samples, fewer only when the window reaches the item's end: the rest is the codec's
        own zero padding up to a whole frame); decode: codes ``[n_q, frames]``.
    frames: the window's length in frames (what the model sees before any batch padding).
    keep: the frames of the window's result that belong to the item (its core).
    last: this is the item's last window.
    """

    key: Hashable
    data: np.ndarray
    frames: int
    keep: slice
    last: bool


def audio_windows(
    blocks: Iterable[np.ndarray],
    hop: int,
    block_frames: int,
    context: int,
    gain: float = 1.0,
    key: Hashable = 0,
    *,
    tail: int,
) -> Iterator[Window]:
    """Encoder windows of a long mono signal given as consecutive blocks (any sizes).

    The kept cores cover ``ceil((T + tail) / hop)`` frames in order: ``tail`` is the
    decoder's shortfall (:meth:`codec.generator.Codec.frames_for`), so the codes decode to
    at least ``T`` samples; the signal is extended by ``tail`` zeros, exactly the codec's
    own end padding. ``gain`` multiplies every sample first (the level step).
    ``context``: frames each side. An empty signal gives no windows.
    """
    if block_frames < 1:
        raise ValueError(f"block_frames: must be >= 1, got {block_frames}")
    blocks = _with_tail(blocks, tail)
    ctx, core = context * hop, block_frames * hop
    g = np.float32(gain)
    buf = np.zeros(0, np.float32)
    buf_start = 0  # absolute index of buf[0]
    next_core = 0  # absolute start of the next window's core
    total = 0

    def cut(hi: int, last: bool) -> Window:
        lo = max(0, next_core - ctx)
        x = buf[lo - buf_start : hi - buf_start]
        n = block_frames if not last else min(block_frames, math.ceil((hi - next_core) / hop))
        first = (next_core - lo) // hop
        return Window(key, x, math.ceil(len(x) / hop), slice(first, first + n), last)

    for block in blocks:
        block = np.asarray(block, np.float32)
        if g != 1:
            block = block * g
        buf = np.concatenate([buf, block]) if len(buf) else block
        total += len(block)
        # the window after this one must have started for this one not to be the last
        while total > next_core + core + ctx:
            yield cut(next_core + core + ctx, last=False)
            next_core += core
            drop = max(0, next_core - ctx) - buf_start
            buf, buf_start = buf[drop:], buf_start + drop
    while next_core < total:
        # the stream has ended: every remaining window reaches the end of the signal
        last = next_core + core >= total
        yield cut(min(total, next_core + core + ctx), last=last)
        next_core += core


def _with_tail(blocks: Iterable[np.ndarray], tail: int) -> Iterator[np.ndarray]:
    """``blocks``, then ``tail`` zeros unless the signal was empty."""
    any_samples = False
    for b in blocks:
        any_samples = any_samples or len(b) > 0
        yield b
    if any_samples and tail > 0:
        yield np.zeros(tail, np.float32)


def code_windows(
    codes: np.ndarray, block_frames: int, context: int, key: Hashable = 0
) -> Iterator[Window]:
    """Decoder windows of codes ``[n_q, F]``; the kept cores cover the ``F`` frames in order."""
    if block_frames < 1:
        raise ValueError(f"block_frames: must be >= 1, got {block_frames}")
    n_frames = codes.shape[-1]
    for f0 in range(0, n_frames, block_frames):
        lo, hi = max(0, f0 - context), min(n_frames, f0 + block_frames + context)
        f1 = min(f0 + block_frames, n_frames)
        yield Window(key, codes[:, lo:hi], hi - lo, slice(f0 - lo, f1 - lo), f1 == n_frames)
