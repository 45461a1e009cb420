"""Blocked encode/decode of arbitrarily long audio with bounded memory and no seams.

The codec is fully convolutional: a latent frame depends on a finite stretch of input
samples around it (the encoder's receptive field) and an output sample on a finite stretch
of frames (the decoder's). So a long signal is processed in windows of ``block_frames``
frames, each extended by a *context* of at least that receptive field on both sides, and
only the window's core is kept. Windows start on multiples of the hop, so every
convolution sees the same sample grid, the same neighbours and (at the file's ends) the
same zero padding as in one whole-file pass: the cores are the whole-file result up to
floating-point summation order. Nothing is cross-faded because nothing differs.

Tolerance (tested in tests/infer/test_infer_blocks.py, debug codec): blocked and
whole-file latents agree to 1e-4 relative; decoding the same codes blocked vs whole
differs by less than 1e-5 of full scale; codes agree except where a latent sits within
float rounding of two codewords' tie (none observed in the tests).

Memory: one window (``block_frames + 2 * context``) of activations at a time; codes are
kept (a few bytes per frame), audio is yielded block by block.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

DEFAULT_BLOCK_SECONDS = 5.0  # activations of one window dominate RSS; ~10% context overhead


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


def _device(codec: nn.Module) -> torch.device:
    return next(codec.parameters()).device


def encode_stream(
    codec: nn.Module,
    blocks: Iterable[np.ndarray],
    n_quantizers: int,
    block_frames: int,
    context: int | None = None,
    gain: float = 1.0,
) -> Iterator[np.ndarray]:
    """Codes of a long mono signal given as consecutive blocks (any sizes, float32).

    Yields ``[n_q, f]`` int64 arrays that concatenate to what ``codec.encode`` gives for the
    whole signal (``ceil(T / hop)`` frames). ``gain`` multiplies every sample first (the
    level step). ``context``: frames each side (None = :func:`context_frames`).
    """
    if block_frames < 1:
        raise ValueError(f"block_frames: must be >= 1, got {block_frames}")
    hop = codec.hop_length
    ctx = (context if context is not None else context_frames(codec)[0]) * hop
    core = block_frames * hop
    dev = _device(codec)
    g = np.float32(gain)
    buf = np.zeros(0, np.float32)
    buf_start = 0  # absolute index of buf[0]
    next_core = 0  # absolute start of the next window's core
    total = 0

    def run(lo: int, hi: int, last: bool) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(buf[lo - buf_start : hi - buf_start]))
        with torch.inference_mode():
            codes, _ = codec.encode(x.to(dev)[None, None], n_quantizers)
        first = (next_core - lo) // hop
        n = block_frames if not last else min(block_frames, math.ceil((hi - next_core) / hop))
        return codes[0, :, first : first + n].cpu().numpy()

    for block in blocks:
        block = np.asarray(block, np.float32)
        if g != 1:
            block = block * g
        buf = np.concatenate([buf, block]) if len(buf) else block
        total += len(block)
        while total >= next_core + core + ctx:
            yield run(max(0, next_core - ctx), next_core + core + ctx, last=False)
            next_core += core
            drop = max(0, next_core - ctx) - buf_start
            buf, buf_start = buf[drop:], buf_start + drop
    while next_core < total:
        # the stream has ended: every remaining window reaches the end of the signal
        yield run(max(0, next_core - ctx), total, last=True)
        next_core += core


def decode_stream(
    codec: nn.Module,
    codes: np.ndarray | torch.Tensor,
    block_frames: int,
    context: int | None = None,
) -> Iterator[np.ndarray]:
    """Audio from codes ``[n_q, F]`` in blocks of ``block_frames * hop`` samples (float32,
    mono); they concatenate to ``codec.decode`` of the whole ``F`` frames (``F * hop``
    samples). ``context``: frames each side (None = :func:`context_frames`)."""
    if block_frames < 1:
        raise ValueError(f"block_frames: must be >= 1, got {block_frames}")
    hop = codec.hop_length
    ctx = context if context is not None else context_frames(codec)[1]
    c = torch.as_tensor(np.asarray(codes), dtype=torch.long).to(_device(codec))
    n_frames = c.shape[-1]
    for f0 in range(0, n_frames, block_frames):
        lo, hi = max(0, f0 - ctx), min(n_frames, f0 + block_frames + ctx)
        with torch.inference_mode():
            y = codec.decode(c[None, :, lo:hi])[0, 0]
        start = (f0 - lo) * hop
        n = (min(f0 + block_frames, n_frames) - f0) * hop
        yield y[start : start + n].float().cpu().numpy()
