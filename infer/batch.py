"""Run windows (:mod:`infer.blocks`) through the codec several at a time.

A batch stacks up to ``batch_windows`` windows (of one long file, or of many files) into
one forward pass, so a GPU is kept busy. Windows in a batch must have equal length, so the
shorter ones (an item's first and last windows, short files) are zero-padded on the right
to the longest. Padding alone would change their results near their real end: in a
whole-file pass every convolution pads *its own input* with zeros at the file's end,
while a padded window would feed it the previous layer's response to the padding (biases,
Snake) instead. So while a batch holds a padded window, every convolution of the encoder or
decoder gets a forward pre-hook that zeroes its input beyond each window's valid length.
Every length in these networks is an affine function of the frame count (strided convs
divide it, transposed convs multiply it, an odd-stride one then drops a position), measured
once per network (:func:`conv_input_lengths`). With that, a padded window's valid part is
computed from exactly the values a window of its own length sees: batched == unbatched up
to floating-point summation order (tested: codes identical, audio within 1e-5).

Memory: one batch of windows' activations (``batch_windows`` x one window).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice

import numpy as np
import torch
from torch import Tensor, nn

from infer.blocks import Window


def batches(windows: Iterable[Window], size: int) -> Iterator[list[Window]]:
    """Consecutive groups of up to ``size`` windows (order kept)."""
    if size < 1:
        raise ValueError(f"batch_windows: must be >= 1, got {size}")
    it = iter(windows)
    while chunk := list(islice(it, size)):
        yield chunk


def _convs(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]


_LENGTHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def conv_input_lengths(network: nn.Module) -> dict[nn.Module, tuple[int, int]]:
    """``(length at 1 frame, samples per extra frame)`` of every conv's input in ``network``.

    Lengths are affine in the frame count, ``a * F - b``, but not always proportional: an
    odd-stride upsampling layer (DAC's) makes ``L * r - 1``. So each conv's affine rule is
    measured once, by running the network on 2 and on 3 frames of zeros (cached per
    network; not on 1, where a compiled Snake would see a size-1 axis and recompile). Input:
    ``[1, in_channels, F * unit]``, ``unit`` the product of the plain convs' strides (the
    hop for an encoder, 1 for a decoder).
    """
    if network in _LENGTHS:
        return _LENGTHS[network]
    convs = _convs(network)
    unit = math.prod(m.stride[0] for m in convs if isinstance(m, nn.Conv1d))
    p = _param(network)
    seen: dict[nn.Module, list[int]] = {m: [] for m in convs}
    handles = [
        m.register_forward_pre_hook(lambda m, a: seen[m].append(a[0].shape[-1])) for m in convs
    ]
    try:
        with torch.inference_mode():
            for f in (2, 3):
                network(
                    torch.zeros(1, convs[0].in_channels, f * unit, device=p.device, dtype=p.dtype)
                )
    finally:
        for h in handles:
            h.remove()
    rules = {m: (2 * l2 - l3, l3 - l2) for m, (l2, l3) in seen.items()}
    _LENGTHS[network] = rules
    return rules


@contextmanager
def valid_lengths(network: nn.Module, frames: Sequence[int], batch_frames: int):
    """Within the block, every conv of ``network`` sees zeros past item ``i``'s first
    ``frames[i]`` frames (mapped to the conv's input length by
    :func:`conv_input_lengths`): as if each item had been run alone. No hooks at all when
    no item is padded."""
    if all(f == batch_frames for f in frames):
        yield
        return
    rules = conv_input_lengths(network)
    extra = torch.tensor([f - 1 for f in frames])
    masks: dict[tuple[nn.Module, torch.device, torch.dtype], Tensor] = {}

    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        key = (module, x.device, x.dtype)
        if key not in masks:
            first, per_frame = rules[module]
            pos = torch.arange(x.shape[-1])
            m = (pos[None, :] < (first + extra * per_frame)[:, None]).to(x.dtype)
            masks[key] = m[:, None, :].to(x.device)
        return (x * masks[key], *args[1:])

    handles = [m.register_forward_pre_hook(hook) for m in _convs(network)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _param(module: nn.Module) -> Tensor:
    return next(module.parameters())


def encode_batch(codec: nn.Module, batch: Sequence[Window], n_quantizers: int) -> list[np.ndarray]:
    """Codes ``[n_q, kept frames]`` (int64) of each encoder window in ``batch``."""
    hop = codec.hop_length
    frames = max(w.frames for w in batch)
    x = np.zeros((len(batch), 1, frames * hop), np.float32)
    for i, w in enumerate(batch):
        x[i, 0, : len(w.data)] = w.data
    p = _param(codec.encoder)
    xt = torch.from_numpy(x).to(p.device, p.dtype)
    with torch.inference_mode(), valid_lengths(codec.encoder, [w.frames for w in batch], frames):
        latents = codec.encoder(xt)
        # the quantizer works in fp32 whatever the encoder's precision (as in training)
        codes = codec.quantizer.quantize(latents.float(), n_quantizers).cpu().numpy()
    return [codes[i, :, w.keep] for i, w in enumerate(batch)]


def decode_batch(codec: nn.Module, batch: Sequence[Window]) -> list[np.ndarray]:
    """Mono float32 audio of each decoder window's kept frames (``kept frames * hop``
    samples, ``tail`` fewer for a window that ends at its item's last frame: see
    :meth:`codec.generator.Codec.decoded_length`)."""
    hop = codec.hop_length
    frames = max(w.frames for w in batch)
    n_q = batch[0].data.shape[0]
    codes = np.zeros((len(batch), n_q, frames), np.int64)  # code 0 pads: any valid entry
    for i, w in enumerate(batch):
        codes[i, :, : w.frames] = w.data
    p = _param(codec.decoder)
    ct = torch.from_numpy(codes).to(p.device)
    with torch.inference_mode(), valid_lengths(codec.decoder, [w.frames for w in batch], frames):
        z = codec.quantizer.from_codes(ct)
        y = codec.decoder(z.to(p.dtype))[:, 0].float().cpu().numpy()
    # a window's own output is decoded_length(w.frames) long; past it lies batch padding
    ends = [min(w.keep.stop * hop, codec.decoded_length(w.frames)) for w in batch]
    for w, end in zip(batch, ends, strict=True):
        if not w.last and end < w.keep.stop * hop:
            # only an item's last window may end short; otherwise samples would vanish
            raise ValueError("decoder windows need at least 1 frame of context after the core")
    return [
        y[i, w.keep.start * hop : end] for i, (w, end) in enumerate(zip(batch, ends, strict=True))
    ]


def run(
    codec: nn.Module,
    windows: Iterable[Window],
    batch_windows: int,
    n_quantizers: int | None = None,
) -> Iterator[tuple[Window, np.ndarray]]:
    """Each window with its result, in order: codes when ``n_quantizers`` is given (encoder
    windows), else audio (decoder windows)."""
    for batch in batches(windows, batch_windows):
        if n_quantizers is not None:
            yield from zip(batch, encode_batch(codec, batch, n_quantizers), strict=True)
        else:
            yield from zip(batch, decode_batch(codec, batch), strict=True)
