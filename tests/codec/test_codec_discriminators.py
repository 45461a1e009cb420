"""Discriminator output structure and behaviour."""

from __future__ import annotations

import torch

from codec.build import build_discriminator
from codec.config import DiscriminatorConfig


def test_structure_five_mpd_plus_one_per_fft_size(debug_disc_cfg, make_speech):
    disc = build_discriminator(debug_disc_cfg, 16000)
    x = make_speech(0.3, batch=2)[..., :4801]  # length not a multiple of any period
    out = disc(x)
    n_fft = len(debug_disc_cfg.fft_sizes)
    assert disc.n_subdiscriminators == len(out) == 5 + n_fft
    for fmaps in out[:5]:  # MPD: one map per conv + logits
        assert len(fmaps) == len(debug_disc_cfg.mpd_channels) + 1
        assert fmaps[-1].shape[:2] == (2, 1) and fmaps[-1].dim() == 4
    for fmaps in out[5:]:  # STFT: 5 convs per band + logits
        assert len(fmaps) == 5 * len(debug_disc_cfg.bands) + 1
        assert fmaps[-1].shape[:2] == (2, 1)
    for fmaps in out:
        assert all(torch.isfinite(f).all() for f in fmaps)
    # MPD folds by period: the last axis of its maps is the period.
    assert [o[-1].shape[-1] for o in out[:5]] == [2, 3, 5, 7, 11]


def test_stft_discriminator_band_split_covers_spectrum():
    disc = build_discriminator(DiscriminatorConfig(stft_channels=2, mpd_channels=(2,)), 16000)
    for d, n_fft in zip(disc.mrd.discriminators, (1024, 512, 256), strict=True):
        bins = n_fft // 2 + 1
        assert d.bands[0][0] == 0 and d.bands[-1][1] == bins
        assert all(a[1] == b[0] for a, b in zip(d.bands, d.bands[1:], strict=False))
        assert d.hop_length == n_fft // 4


def test_gradients_reach_the_input_and_dc_is_ignored(debug_disc_cfg, make_speech):
    disc = build_discriminator(debug_disc_cfg, 16000)
    x = make_speech(0.25).requires_grad_()
    sum(o[-1].sum() for o in disc(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        a = disc(x.detach())
        b = disc(x.detach() + 0.2)  # DC offset removed before discriminating (DAC)
    for fa, fb in zip(a, b, strict=True):
        torch.testing.assert_close(fa[-1], fb[-1], atol=1e-4, rtol=1e-4)
