"""Blocked processing equals whole-file processing (the tolerance stated in infer.blocks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infer import blocks
from tests.infer._inferdata import decode_stream, encode_stream, speech


def test_receptive_field_bounds_hold(codec):
    """Autograd support of one frame / one sample lies inside the analytic bounds."""
    hop, f = codec.hop_length, 60
    x = torch.randn(1, 1, 120 * hop, requires_grad=True)
    codec.encoder(x)[0, :, f].sum().backward()
    nz = torch.nonzero(x.grad[0, 0]).flatten()
    reach = blocks.encoder_reach(codec.encoder)
    assert max(f * hop - nz.min().item(), nz.max().item() - f * hop) <= reach
    # the bound is tight on at least one side (a loose bound would waste compute)
    assert max(f * hop - nz.min().item(), nz.max().item() - f * hop) > 0.8 * reach
    z = torch.randn(1, codec.latent_dim, 120, requires_grad=True)
    codec.decoder(z)[0, 0, f * hop].backward()
    nzf = torch.nonzero(z.grad[0].abs().sum(0)).flatten()
    dec_frames = max(f - nzf.min().item(), nzf.max().item() - f)
    assert dec_frames * hop <= blocks.decoder_reach(codec.decoder, hop)
    enc_ctx, dec_ctx = blocks.context_frames(codec)
    assert enc_ctx * hop > reach and dec_ctx > dec_frames


@pytest.mark.parametrize("block_frames", [7, 25, 64])
def test_blocked_encode_equals_whole(codec, block_frames):
    x = speech(3.03, seed=5)  # not a multiple of the hop
    with torch.inference_mode():
        whole, lat = codec.encode(torch.from_numpy(x)[None, None], 4)
    rng = np.random.default_rng(block_frames)
    cuts = np.sort(rng.integers(0, len(x), 6))
    pieces = np.split(x, cuts)  # arbitrary input blocks, including empty ones
    got = np.concatenate(list(encode_stream(codec, pieces, 4, block_frames)), axis=1)
    assert got.shape == tuple(whole.shape[1:])
    np.testing.assert_array_equal(got, whole[0].numpy())


def test_blocked_decode_equals_whole_within_tolerance(codec):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 64, size=(4, 157))
    with torch.inference_mode():
        whole = codec.decode(torch.from_numpy(codes)[None])[0, 0].numpy()
    for block_frames in (5, 40, 200):
        got = np.concatenate(list(decode_stream(codec, codes, block_frames)))
        assert got.shape == whole.shape
        assert np.abs(got - whole).max() < 1e-5


def test_too_little_context_shows_seams(codec):
    """The check above can fail: with too little context the block edges differ. (One frame,
    not none: a window's last ``tail`` samples need the frame after its core, as the
    decoder makes ``F * hop - tail`` samples from ``F`` frames.)"""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 64, size=(4, 100))
    with torch.inference_mode():
        whole = codec.decode(torch.from_numpy(codes)[None])[0, 0].numpy()
    got = np.concatenate(list(decode_stream(codec, codes, 20, context=1)))
    assert np.abs(got - whole).max() > 1e-3


@pytest.mark.parametrize("seconds", [0.01, 0.9, 3.03])
def test_window_plan_covers_every_frame_once_with_context(seconds):
    hop, block, ctx = 320, 7, 3
    x = speech(seconds, seed=1)
    n_frames = -(-len(x) // hop)
    wins = list(blocks.audio_windows(np.array_split(x, 5), hop, block, ctx, tail=0))
    kept, start = [], 0
    for w in wins:
        lo = start - min(start, ctx)  # the window starts ctx frames before its core
        assert w.keep.start == start - lo
        core = w.keep.stop - w.keep.start
        assert 1 <= core <= block
        # context on the right unless the window reaches the signal's end
        assert w.frames >= w.keep.stop + ctx or lo * hop + len(w.data) == len(x)
        np.testing.assert_array_equal(w.data, x[lo * hop : lo * hop + len(w.data)])
        kept.append((start, start + core))
        start += core
    assert start == n_frames and kept[0][0] == 0
    assert [w.last for w in wins] == [False] * (len(wins) - 1) + [True]
    codes = np.arange(2 * n_frames).reshape(2, n_frames)
    cw = list(blocks.code_windows(codes, block, ctx))
    assert [(w.keep.start, w.keep.stop, w.frames) for w in cw] == [
        (w.keep.start, w.keep.stop, w.frames) for w in wins
    ]
    assert cw[-1].last and not any(w.last for w in cw[:-1])


def test_a_window_without_context_after_its_core_is_refused(codec):
    """With no frame after its core a window's last ``tail`` samples do not exist; a gap in
    the middle of the output is refused rather than silently closed up."""
    codes = np.random.default_rng(0).integers(0, 64, size=(4, 30))
    with pytest.raises(ValueError, match="at least 1 frame of context after the core"):
        list(decode_stream(codec, codes, 10, context=0))
