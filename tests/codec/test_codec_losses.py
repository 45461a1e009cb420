"""Loss values on crafted inputs."""

from __future__ import annotations

import math

import pytest
import torch

from codec.build import build_codec, build_generator_loss, build_mel_loss
from codec.config import LossConfig
from codec.losses import (
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)


def fake_d(logit_value: float, n_sub: int = 2, fmap_value: float = 0.0):
    return [
        [torch.full((2, 3, 4), fmap_value), torch.full((2, 1, 5), logit_value)]
        for _ in range(n_sub)
    ]


def test_lsgan_values():
    # Perfect discriminator: real -> 1, fake -> 0.
    assert discriminator_loss(fake_d(1.0), fake_d(0.0)).item() == 0.0
    # Fully fooled: (1 - 0)^2 + 1^2 = 2 per sub-discriminator.
    assert discriminator_loss(fake_d(0.0), fake_d(1.0)).item() == pytest.approx(4.0)
    assert discriminator_loss(fake_d(0.5), fake_d(0.5)).item() == pytest.approx(2 * 0.5)
    assert generator_adversarial_loss(fake_d(1.0)).item() == 0.0
    assert generator_adversarial_loss(fake_d(0.0, n_sub=3)).item() == pytest.approx(3.0)
    assert generator_adversarial_loss(fake_d(-1.0)).item() == pytest.approx(2 * 4.0)


def test_feature_matching_is_l1_of_feature_maps_without_logits():
    real = fake_d(5.0, fmap_value=1.0)
    fake = fake_d(-5.0, fmap_value=1.5)  # logits differ a lot but are excluded
    assert feature_matching_loss(real, fake).item() == pytest.approx(2 * 0.5)
    real_t = [[f.clone().requires_grad_() for f in sub] for sub in real]
    fake_t = [[f.clone().requires_grad_() for f in sub] for sub in fake]
    feature_matching_loss(real_t, fake_t).backward()
    assert real_t[0][0].grad is None  # real features are targets, not trained here
    assert fake_t[0][0].grad is not None


def test_mel_loss_zero_for_identical_and_exact_for_gain(make_speech):
    mel = build_mel_loss(LossConfig(), 16000)
    x = make_speech(0.5, batch=2)
    y = make_speech(0.5, batch=2, seed=9)
    assert mel(x, x).item() == 0.0
    assert mel(y, x).item() > 0.1
    # A 2x gain shifts every unclamped log10 magnitude by log10(2) at all 7 scales; white
    # noise at -20 dBFS keeps every mel bin (even 32-sample windows) above the 1e-5 clamp.
    noise = 0.1 * torch.randn(2, 1, 8000)
    assert mel(2 * noise, noise).item() == pytest.approx(7 * math.log10(2), rel=1e-4)
    # Speech has pauses where the smallest windows fall under the clamp: less than that.
    assert 0.5 < mel(2 * x, x).item() < 7 * math.log10(2)


def test_mrstft_zero_for_identical_positive_otherwise(make_speech):
    loss = MultiResolutionSTFTLoss()
    x = make_speech(0.5, batch=2)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(0.5 * x, x).item() > 0.5  # SC 0.5 + log|0.5| = 0.69 per resolution


def test_generator_loss_returns_named_terms_and_weighted_total(debug_codec_cfg, make_speech):
    cfg = LossConfig(waveform_l1_weight=0.5, stft_weight=0.7)
    loss = build_generator_loss(cfg, 16000)
    codec = build_codec(debug_codec_cfg).train()
    x = make_speech(0.25, batch=2)
    out = codec(x)
    d_real, d_fake = fake_d(0.9), fake_d(0.2, fmap_value=0.3)
    total, terms = loss(x, out.audio, out, d_real, d_fake)
    assert set(terms) == {
        "mel",
        "stft",
        "waveform_l1",
        "codebook",
        "commitment",
        "adversarial",
        "feature_matching",
    }
    assert all(not t.requires_grad and t.dim() == 0 for t in terms.values())
    assert total.requires_grad
    weights = {
        "mel": 15.0,
        "stft": 0.7,
        "waveform_l1": 0.5,
        "codebook": 1.0,
        "commitment": 0.25,
        "adversarial": 1.0,
        "feature_matching": 2.0,
    }
    expect = sum(weights[k] * v for k, v in terms.items())
    assert total.item() == pytest.approx(expect.item(), rel=1e-5)
    assert terms["adversarial"].item() == pytest.approx(2 * 0.8**2, rel=1e-5)

    # Without discriminator outputs (warm-up), the GAN terms are skipped.
    total2, terms2 = build_generator_loss(LossConfig(), 16000)(x, out.audio, out)
    assert set(terms2) == {"mel", "waveform_l1", "codebook", "commitment"}
    with pytest.raises(ValueError, match="d_real"):
        loss(x, out.audio, out, d_real, None)


def test_too_short_audio_is_a_clear_error():
    mel = build_mel_loss(LossConfig(), 16000)
    x = torch.zeros(1, 1, 1000)  # the 2048-sample scale needs more than 1024 samples
    with pytest.raises(ValueError, match="too short"):
        mel(x, x)
