"""The debug codec learns: trained on one clip with mel + VQ losses, it fits that clip."""

from __future__ import annotations

import torch

from codec.build import build_codec, build_generator_loss
from codec.config import CodecConfig, LossConfig
from codec.metrics import mel_distance, phase_coherence


def test_debug_codec_overfits_one_clip(make_speech):
    torch.manual_seed(0)
    cfg = CodecConfig(
        encoder_dim=8, decoder_dim=32, n_codebooks=4, codebook_size=64, quantizer_dropout=0.0
    )
    codec = build_codec(cfg)
    # mel + codebook + commitment only (no GAN): the GAN weights are unused without
    # discriminator outputs.
    loss_fn = build_generator_loss(LossConfig(), cfg.sample_rate)
    x = make_speech(0.5, seed=0)
    opt = torch.optim.Adam(codec.parameters(), lr=1e-3)

    def evaluate() -> tuple[float, torch.Tensor]:
        codec.eval()
        with torch.no_grad():
            y = codec(x).audio
        codec.train()
        return mel_distance(x, y, cfg.sample_rate).item(), y

    before, _ = evaluate()
    for _ in range(120):
        out = codec(x)
        total, terms = loss_fn(x, out.audio, out)
        assert set(terms) == {"mel", "waveform_l1", "codebook", "commitment"}
        opt.zero_grad()
        total.backward()
        opt.step()
    after, y = evaluate()

    # Level-matched noise: what getting only the level right would score.
    noise = torch.randn_like(x) * x.pow(2).mean().sqrt()
    noise_baseline = mel_distance(x, noise, cfg.sample_rate).item()
    assert after < 0.5 * before, (before, after)
    assert after < 0.35 * noise_baseline, (after, noise_baseline)
    # The envelope is reproduced (the waveform, with mel losses only, need not be yet).
    assert phase_coherence(x, y, cfg.sample_rate)["envelope_corr"].item() > 0.9
