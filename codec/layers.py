"""Building blocks shared by the generator: weight-normalised convolutions and Snake.

Weight norm uses ``torch.nn.utils.parametrizations.weight_norm`` (not the deprecated
hook-based ``torch.nn.utils.weight_norm``): the parametrised module deep-copies, pickles,
works under DDP and ``torch.compile``, and its ``state_dict`` holds the two real tensors
(``parametrizations.weight.original0`` = g, ``original1`` = v).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def WNConv1d(*args, **kwargs) -> nn.Conv1d:  # noqa: N802 (DAC's name, reads like a class)
    """``nn.Conv1d`` with weight normalisation (same arguments as ``nn.Conv1d``)."""
    return weight_norm(nn.Conv1d(*args, **kwargs))


def WNConv2d(*args, **kwargs) -> nn.Conv2d:  # noqa: N802
    """``nn.Conv2d`` with weight normalisation (same arguments as ``nn.Conv2d``)."""
    return weight_norm(nn.Conv2d(*args, **kwargs))


def WNConvTranspose1d(*args, **kwargs) -> nn.ConvTranspose1d:  # noqa: N802
    """``nn.ConvTranspose1d`` with weight normalisation.

    For transposed convs the weight is ``[in, out, k]``, so the norm is taken over dim 1..2
    per *input* channel by default; DAC does the same (it passes no ``dim``).
    """
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


def downsample_conv(in_ch: int, out_ch: int, stride: int) -> nn.Conv1d:
    """Strided conv that maps ``T`` samples to exactly ``T / stride`` frames.

    DAC's choice: kernel ``2 * stride``, padding ``ceil(stride / 2)``. For a length that is a
    multiple of ``stride`` the output length is ``T / stride`` for even and odd strides.
    """
    return WNConv1d(
        in_ch, out_ch, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
    )


def upsample_conv(in_ch: int, out_ch: int, stride: int) -> nn.ConvTranspose1d:
    """DAC's upsampling layer, exactly: kernel ``2 * stride``, padding ``ceil(stride / 2)``.

    It maps ``L`` positions to ``L * stride - stride % 2``: one short for an odd stride (the
    5 of the 16/24 kHz models). Padding the missing position back (``output_padding``) would
    give round lengths but change the samples next to the end, since every later conv would
    read that extra position where DAC reads zero padding; imported DAC weights would then
    not reproduce DAC near a segment's end. The shortfall is accounted for once, in
    :meth:`codec.generator.Codec.decoded_length`.
    """
    return WNConvTranspose1d(
        in_ch, out_ch, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
    )


def snake(x: Tensor, alpha: Tensor) -> Tensor:
    """Snake activation ``x + 1/alpha * sin(alpha * x)**2`` (Ziyin et al. 2020, as in DAC).

    ``alpha`` broadcasts per channel (``[1, C, 1]``); ``1e-9`` guards ``alpha -> 0``, where
    the function tends to the identity.
    """
    if not torch.is_grad_enabled():
        # No autograd graph (inference, validation): one buffer instead of five
        # temporaries; the same operations in the same order, so bitwise the same values,
        # about 2x faster on a CPU where Snake is memory-bound.
        y = torch.sin(alpha * x)
        y.square_()
        y.mul_((alpha + 1e-9).reciprocal())
        return y.add_(x)
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


class Snake(nn.Module):
    """Per-channel Snake on ``[B, C, T]`` with a learnable ``alpha`` initialised to 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return snake(x, self.alpha)


class ResidualUnit(nn.Module):
    """DAC residual unit: Snake -> dilated conv k7 -> Snake -> conv k1, plus the input.

    Padding keeps the length, so the residual adds without cropping.
    """

    def __init__(self, dim: int, dilation: int = 1):
        super().__init__()
        self.block = nn.Sequential(
            Snake(dim),
            WNConv1d(dim, dim, kernel_size=7, dilation=dilation, padding=3 * dilation),
            Snake(dim),
            WNConv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)
