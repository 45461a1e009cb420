"""Every STFT / mel / complex-spectrogram computation runs in fp32 with autocast off, and
losses computed under bf16 autocast equal the fp32 reference."""

from __future__ import annotations

import pytest
import torch

from codec import metrics
from codec.build import build_discriminator, build_generator_loss, build_mel_loss
from codec.config import LossConfig
from codec.losses import MultiResolutionSTFTLoss
from codec.spectral import mel_filterbank, mel_spectrogram


@pytest.fixture
def stft_calls(monkeypatch):
    """Record (input dtype, autocast on?, output dtype) of every torch.stft call."""
    calls = []
    real_stft = torch.stft

    def spy(x, *args, **kwargs):
        out = real_stft(x, *args, **kwargs)
        calls.append((x.dtype, torch.is_autocast_enabled("cpu"), out.dtype))
        return out

    monkeypatch.setattr(torch, "stft", spy)
    return calls


def _assert_all_fp32(calls, at_least):
    assert len(calls) >= at_least
    for in_dtype, autocast_on, out_dtype in calls:
        assert in_dtype == torch.float32
        assert autocast_on is False
        assert out_dtype == torch.complex64


def _bf16_pair(make_speech):
    # What a bf16 generator hands the losses: a bf16 reconstruction of an fp32 input.
    ref = make_speech(0.5, batch=2)
    est = (0.8 * ref + 0.01 * torch.randn_like(ref)).to(torch.bfloat16)
    return ref, est


def test_mel_and_stft_losses_are_fp32_and_equal_reference(make_speech, stft_calls):
    ref, est = _bf16_pair(make_speech)
    mel = build_mel_loss(LossConfig(), 16000)
    mrstft = MultiResolutionSTFTLoss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
        mel_amp = mel(est, ref)
        stft_amp = mrstft(est, ref)
    _assert_all_fp32(stft_calls, at_least=2 * 7 + 2 * 3)
    assert mel_amp.dtype == stft_amp.dtype == torch.float32
    mel_ref = mel(est.float(), ref)  # no autocast anywhere
    stft_ref = mrstft(est.float(), ref)
    torch.testing.assert_close(mel_amp, mel_ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(stft_amp, stft_ref, rtol=1e-6, atol=0)


def test_generator_loss_spectral_terms_match_fp32(make_speech, debug_codec_cfg, stft_calls):
    from codec.build import build_codec

    ref, est = _bf16_pair(make_speech)
    cfg = LossConfig(stft_weight=1.0, waveform_l1_weight=1.0)
    loss = build_generator_loss(cfg, 16000)
    codec_out = build_codec(debug_codec_cfg).eval()(ref[..., :3200])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, amp_terms = loss(ref, est, codec_out)
    _, ref_terms = loss(ref, est.float(), codec_out)
    _assert_all_fp32(stft_calls, at_least=2 * (2 * 7 + 2 * 3))
    for name in ("mel", "stft", "waveform_l1"):
        assert amp_terms[name].dtype == torch.float32
        torch.testing.assert_close(amp_terms[name], ref_terms[name], rtol=1e-6, atol=0)


def test_mel_projection_stays_fp32_under_autocast(make_speech):
    x = make_speech(0.25).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        m = mel_spectrogram(x, 16000, n_fft=512, hop=128, n_mels=80)
        # Control: the same matmul outside the island is lowered to bf16 by autocast.
        fb = mel_filterbank(16000, 512, 80)
        control = torch.randn(3, 257) @ fb
    assert m.dtype == torch.float32
    assert control.dtype == torch.bfloat16
    torch.testing.assert_close(
        m, mel_spectrogram(x.float(), 16000, 512, 128, 80), rtol=1e-6, atol=0
    )


def test_discriminator_spectrogram_is_fp32_under_autocast(debug_disc_cfg, make_speech, stft_calls):
    disc = build_discriminator(debug_disc_cfg, 16000)
    x = make_speech(0.25).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bands = disc.mrd.discriminators[0].spectrogram(x)
        out = disc(x)
    _assert_all_fp32(stft_calls, at_least=1 + len(debug_disc_cfg.fft_sizes))
    assert all(b.dtype == torch.float32 for b in bands)
    # ...while the conv stack after it runs in the ambient precision.
    assert out[-1][-1].dtype == torch.bfloat16


def test_metrics_mel_distance_is_fp32_under_autocast(make_speech, stft_calls):
    ref, est = _bf16_pair(make_speech)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d_amp = metrics.mel_distance(ref, est, 16000)
    _assert_all_fp32(stft_calls, at_least=14)
    torch.testing.assert_close(
        d_amp, metrics.mel_distance(ref, est.float(), 16000), rtol=1e-6, atol=0
    )


def test_default_mel_filters_each_cover_a_bin():
    cfg = LossConfig()
    for n_fft, n_mels in zip(cfg.mel.window_lengths, cfg.mel.n_mels, strict=True):
        fb = mel_filterbank(16000, n_fft, n_mels)
        assert fb.shape == (n_fft // 2 + 1, n_mels)
        assert (fb.sum(dim=0) > 0).all(), f"empty mel filter at n_fft={n_fft}, n_mels={n_mels}"


def test_full_step_under_bf16_autocast(debug_codec_cfg, debug_disc_cfg, make_speech):
    from codec.build import build_codec
    from codec.losses import discriminator_loss

    codec = build_codec(debug_codec_cfg).train()
    disc = build_discriminator(debug_disc_cfg, 16000).train()
    loss_fn = build_generator_loss(LossConfig(), 16000)
    x = make_speech(0.25, batch=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = codec(x)
        assert out.latents.dtype == torch.bfloat16  # the convs do run in bf16...
        assert out.audio.dtype == torch.float32  # ...but the last conv and tanh in fp32
        loss_d = discriminator_loss(disc(x), disc(out.audio.detach()))
        total, terms = loss_fn(x, out.audio, out, disc(x), disc(out.audio))
    assert loss_d.dtype == total.dtype == torch.float32
    assert all(t.dtype == torch.float32 and torch.isfinite(t) for t in terms.values())
    total.backward()
    grads = [p.grad for p in codec.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
