"""CodecConfig / DiscriminatorConfig / LossConfig: arithmetic and validation."""

from __future__ import annotations

import pytest

from codec.config import CodecConfig, DiscriminatorConfig, LossConfig


def test_production_defaults_give_dac_16k_bitrates():
    cfg = CodecConfig()
    assert cfg.hop_length == 320
    assert cfg.frame_rate == 50.0
    assert cfg.bits_per_codebook == 10.0
    assert cfg.resolved_latent_dim == 64 * 2**4
    # 12 codebooks x 10 bits x 50 frames/s = 6000 bit/s; 8 -> 4000 bit/s.
    assert cfg.bitrate_kbps() == pytest.approx(6.0)
    assert cfg.bitrate_kbps(8) == pytest.approx(4.0)
    assert cfg.bitrate_kbps(4) == pytest.approx(2.0)
    assert [cfg.n_quantizers_for_kbps(k) for k in (2, 4, 6)] == [4, 8, 12]
    assert "6 kbps" in cfg.summary() and "50 frames/s" in cfg.summary()
    prod = CodecConfig(default_n_quantizers=8)
    assert prod.operating_n_quantizers == 8
    assert prod.bitrate_kbps(prod.operating_n_quantizers) == pytest.approx(4.0)
    assert "8 codebooks = 4 kbps" in prod.summary()
    assert cfg.operating_n_quantizers == 12


def test_small_codebooks_bitrate_and_out_of_range_requests():
    cfg = CodecConfig(encoder_dim=8, decoder_dim=32, n_codebooks=4, codebook_size=64)
    assert cfg.bits_per_codebook == 6.0
    assert cfg.bitrate_kbps() == pytest.approx(4 * 6 * 50 / 1000)
    with pytest.raises(ValueError, match="kbps"):
        cfg.n_quantizers_for_kbps(6.0)
    with pytest.raises(ValueError, match="n_q"):
        cfg.bitrate_kbps(5)


def test_yaml_lists_become_tuples():
    cfg = CodecConfig(encoder_rates=[2, 4, 5, 8], decoder_rates=[8, 5, 4, 2])
    assert cfg.encoder_rates == (2, 4, 5, 8) and isinstance(cfg.decoder_rates, tuple)
    d = DiscriminatorConfig(bands=[[0.0, 0.5], [0.5, 1.0]], periods=[2, 3])
    assert d.bands == ((0.0, 0.5), (0.5, 1.0)) and d.periods == (2, 3)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"decoder_rates": (8, 5, 4, 4)}, "decoder_rates"),
        ({"encoder_rates": (1, 320)}, "encoder_rates"),
        ({"decoder_dim": 100}, "decoder_dim"),
        ({"quantizer_dropout": 1.5}, "quantizer_dropout"),
        ({"codebook_size": 1}, "codebook_size"),
        ({"usage_decay": 1.0}, "usage_decay"),
        ({"dead_code_threshold": -0.1}, "dead_code_threshold"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"default_n_quantizers": 13}, "default_n_quantizers"),
    ],
)
def test_codec_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        CodecConfig(**kwargs)


@pytest.mark.parametrize(
    "cls, kwargs, field",
    [
        (DiscriminatorConfig, {"bands": ((0.5, 0.2),)}, "bands"),
        (DiscriminatorConfig, {"fft_sizes": ()}, "fft_sizes"),
        (DiscriminatorConfig, {"hop_factor": 0.0}, "hop_factor"),
        (LossConfig, {"mel_weight": -1.0}, "mel_weight"),
        (LossConfig, {"mel": {"n_mels": (5, 10)}}, "mel.n_mels"),
        (LossConfig, {"stft_hop_sizes": (50,)}, "stft_hop_sizes"),
        (LossConfig, {"stft_win_lengths": (240, 600, 4096)}, "stft_win_lengths"),
        (LossConfig, {"mel": {"fmax": 0.0}}, "mel.fmax"),
    ],
)
def test_other_config_errors_name_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        cls(**kwargs)


def test_loss_defaults_are_dac_recipe():
    cfg = LossConfig()
    weights = (
        cfg.mel_weight,
        cfg.feature_matching_weight,
        cfg.adversarial_weight,
        cfg.codebook_weight,
        cfg.commitment_weight,
    )
    assert weights == (15.0, 2.0, 1.0, 1.0, 0.25)
    assert cfg.mel.n_mels == (5, 10, 20, 40, 80, 160, 320)
    assert cfg.mel.window_lengths == (32, 64, 128, 256, 512, 1024, 2048)


def test_discriminator_bands_must_keep_two_frequency_columns():
    """A 128-point window leaves the lowest DAC band 6 bins, which three stride-2 convs
    collapse to one column (and where bf16 conv backward on CPU produced NaN gradients)."""
    from codec.config import DiscriminatorConfig

    with pytest.raises(ValueError, match="bands"):
        DiscriminatorConfig(fft_sizes=(512, 256, 128))
    DiscriminatorConfig(fft_sizes=(512, 256))  # lowest band 12 bins: fine
