"""Inference speed options: the defaults change nothing; bf16 stays within its tolerance."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from codec.build import build_codec
from codec.config import CodecConfig
from codec.layers import Snake, snake
from infer import fast
from infer.api import TeluCodec
from tests.infer._inferdata import SR, TINY, speech


def test_inplace_snake_is_bitwise_the_training_snake():
    torch.manual_seed(0)
    x = torch.randn(3, 16, 1000) * 3
    alpha = torch.rand(1, 16, 1) * 2
    with torch.inference_mode():
        assert torch.equal(fast.snake_inplace(x, alpha), snake(x, alpha))


def test_prepare_keeps_the_decoded_output_and_replaces_every_snake():
    torch.manual_seed(0)
    ref = build_codec(CodecConfig(**TINY)).eval()
    torch.manual_seed(0)
    fst = build_codec(CodecConfig(**TINY)).eval()
    n_snakes = sum(isinstance(m, Snake) for m in fst.modules())
    done = fast.prepare(fst)
    assert done["snakes"] == n_snakes and not any(isinstance(m, Snake) for m in fst.modules())
    x = torch.from_numpy(speech(1.0))[None, None]
    with torch.inference_mode():
        codes = ref.encode(x, 4)[0]
        assert torch.equal(fst.encode(x, 4)[0], codes)
        # only the weight-norm folding rounds differently; the Snake change is exact
        torch.testing.assert_close(fst.decode(codes), ref.decode(codes), atol=1e-6, rtol=1e-5)


def test_bf16_option_is_close_to_fp32(tiny_export):
    """bf16 is an explicit option because it changes the output: here by about 40 dB
    below the signal (BENCHMARKS.md has the production-preset figure)."""
    f32 = TeluCodec.load(tiny_export, "cpu", block_seconds=1.0)
    b16 = TeluCodec.load(tiny_export, "cpu", block_seconds=1.0, precision="bf16")
    assert next(b16.codec.decoder.parameters()).dtype == torch.bfloat16
    cf = f32.encode(speech(2.0, seed=1), SR)
    ref, got = f32.decode(cf), b16.decode(cf)
    assert got.dtype == np.float32 and got.shape == ref.shape
    snr = 10 * np.log10(np.sum(ref**2) / np.sum((got - ref) ** 2))
    assert snr > 25, snr
    # the encoder stays fp32: the same codes
    np.testing.assert_array_equal(b16.encode(speech(2.0, seed=1), SR).codes, cf.codes)


@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs a C++ compiler on CPU")
def test_compiled_snake_matches_eager_within_float_rounding(tiny_export):
    """The compile option (~10-20 s here, once) fuses Snake; the output changes by float
    rounding only: within 1e-5 of full scale, codes identical."""
    ref = TeluCodec.load(tiny_export, "cpu", block_seconds=1.0)
    comp = TeluCodec.load(tiny_export, "cpu", block_seconds=1.0, compile=True)
    x = speech(1.5, seed=2)
    cf = ref.encode(x, SR)
    np.testing.assert_array_equal(comp.encode(x, SR).codes, cf.codes)
    assert np.abs(comp.decode(cf) - ref.decode(cf)).max() < 1e-5
