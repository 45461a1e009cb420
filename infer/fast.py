"""Inference-only speed-ups applied to a loaded codec (the model code in :mod:`codec` is
untouched; training never sees any of this).

:func:`prepare` does, in order (speed-ups measured with the production preset, one thread,
CPU time per 5 s window, against folding alone; BENCHMARKS.md has the full table):

1. **Weight norm folded** into plain weights (:func:`strip_weight_norm`): the weight is no
   longer recomputed from (g, v) on every forward. Same outputs to float rounding (its
   cost was small anyway: the weights are tiny next to the activations).
2. **Snake in place** (:class:`InferenceSnake`): ``x + 1/alpha * sin(alpha x)**2`` as
   ``y = sin(alpha x); y **= 2; y *= 1/alpha; y += x`` on one buffer instead of five
   temporaries. Bitwise identical to :func:`codec.layers.snake` (same operations, same
   order; multiplication and addition commute exactly); Snake itself 2x faster, the
   codec ~10-15 % (Snake's memory-bound passes were ~30 % of decode time).
3. ``compile=True``: Snake through ``torch.compile`` (inductor; C++ on a CPU, Triton on a
   GPU) fused into one pass: Snake 4.7x, the codec ~25-30 % faster than (1) alone. Costs a
   compile of ~15-20 s on the first window (once per process: one compile serves every
   shape), so it pays on long inputs or many files. Differs from eager by float rounding
   (~2e-7; tested within 1e-5).
4. ``precision="bf16"``: decoder weights and activations in bfloat16 (AMX kernels on CPUs
   that have them): decoding ~1.9x faster, with (3) ~2.5x. It changes the output
   measurably (decoded SNR against fp32 about 38 dB with random weights), so it is never
   the default. The encoder stays fp32: in bf16 it is only ~20 % faster (its 64-128
   channel convolutions at high rates are memory-bound) and it flips codes (3 % with the
   production preset's random weights, most of them with the tiny test codec), and a code
   file should not depend on a speed option.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from codec.layers import Snake

Precision = Literal["fp32", "bf16"]
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


def strip_weight_norm(module: nn.Module) -> int:
    """Fold every weight-norm parametrisation into a plain weight. Returns how many."""
    from torch.nn.utils import parametrize

    n = 0
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            n += 1
    return n


def snake_inplace(x: Tensor, alpha: Tensor) -> Tensor:
    """:func:`codec.layers.snake` with one output buffer (inference only: no autograd)."""
    y = torch.sin(alpha * x)
    y.square_()
    y.mul_((alpha + 1e-9).reciprocal())
    return y.add_(x)


def _snake_expr(x: Tensor, alpha: Tensor) -> Tensor:
    # the training expression, handed to inductor, which fuses it into one loop
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


_compiled_snake = None


def compiled_snake():
    """The process-wide compiled Snake (one compile, any shape: ``dynamic=True``)."""
    global _compiled_snake
    if _compiled_snake is None:
        _compiled_snake = torch.compile(_snake_expr, dynamic=True)
    return _compiled_snake


class InferenceSnake(nn.Module):
    """Drop-in for :class:`codec.layers.Snake` at inference, sharing its ``alpha``."""

    def __init__(self, alpha: nn.Parameter, compiled: bool = False):
        super().__init__()
        self.alpha = alpha
        self.fn = compiled_snake() if compiled else snake_inplace

    def forward(self, x: Tensor) -> Tensor:
        # detached: dynamo keeps a Parameter's shape static, which would compile once per
        # channel count (and give up after 8); a plain tensor compiles once for all
        return self.fn(x, self.alpha.detach())


def replace_snakes(module: nn.Module, compiled: bool = False) -> int:
    """Swap every :class:`Snake` under ``module`` for an :class:`InferenceSnake`. Returns
    how many."""
    n = 0
    for name, child in module.named_children():
        if isinstance(child, Snake):
            setattr(module, name, InferenceSnake(child.alpha, compiled))
            n += 1
        else:
            n += replace_snakes(child, compiled)
    return n


def prepare(codec: nn.Module, precision: Precision = "fp32", compile: bool = False) -> dict:
    """Make a loaded codec fast for inference (in place; see the module docstring).
    Returns what was done, for logs: ``{"weight_norm_folded", "snakes", "precision",
    "compiled"}``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: must be one of {sorted(PRECISIONS)}, got {precision!r}")
    codec.eval()
    folded = strip_weight_norm(codec)
    codec.requires_grad_(False)
    snakes = replace_snakes(codec, compiled=compile)
    codec.decoder.to(PRECISIONS[precision])  # the encoder stays fp32 (module docstring)
    return {"weight_norm_folded": folded, "snakes": snakes, "precision": precision,
            "compiled": compile}  # fmt: skip
