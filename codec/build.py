"""Builders: typed configs in, plain-argument modules out (the only place both meet)."""

from __future__ import annotations

from torch import nn

from codec.config import CodecConfig, DiscriminatorConfig, LossConfig
from codec.discriminators import Discriminator
from codec.generator import Codec
from codec.losses import GeneratorLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss


def build_codec(cfg: CodecConfig) -> Codec:
    """The generator described by ``cfg``."""
    return Codec(
        sample_rate=cfg.sample_rate,
        encoder_dim=cfg.encoder_dim,
        encoder_rates=cfg.encoder_rates,
        latent_dim=cfg.latent_dim,
        decoder_dim=cfg.decoder_dim,
        decoder_rates=cfg.decoder_rates,
        n_codebooks=cfg.n_codebooks,
        codebook_size=cfg.codebook_size,
        codebook_dim=cfg.codebook_dim,
        quantizer_dropout=cfg.quantizer_dropout,
        dead_code_threshold=cfg.dead_code_threshold,
        usage_decay=cfg.usage_decay,
    )


def build_discriminator(cfg: DiscriminatorConfig, sample_rate: int) -> Discriminator:
    """MPD + multi-band complex-STFT discriminator for audio at ``sample_rate`` Hz."""
    return Discriminator(
        sample_rate=sample_rate,
        periods=cfg.periods,
        fft_sizes=cfg.fft_sizes,
        hop_factor=cfg.hop_factor,
        bands=cfg.bands,
        mpd_channels=cfg.mpd_channels,
        stft_channels=cfg.stft_channels,
        remove_dc=cfg.remove_dc,
        peak_normalize=cfg.peak_normalize,
    )


def build_mel_loss(cfg: LossConfig, sample_rate: int) -> MultiScaleMelLoss:
    """The multi-scale mel loss of ``cfg.mel`` (the spec validation's mel distance uses too)."""
    return MultiScaleMelLoss(sample_rate, cfg.mel)


def build_generator_loss(cfg: LossConfig, sample_rate: int) -> GeneratorLoss:
    """Weighted generator loss for audio at ``sample_rate`` Hz."""
    stft = None
    if cfg.stft_weight > 0:
        stft = MultiResolutionSTFTLoss(cfg.stft_fft_sizes, cfg.stft_hop_sizes, cfg.stft_win_lengths)
    return GeneratorLoss(
        mel_loss=build_mel_loss(cfg, sample_rate),
        stft_loss=stft,
        mel_weight=cfg.mel_weight,
        feature_matching_weight=cfg.feature_matching_weight,
        adversarial_weight=cfg.adversarial_weight,
        codebook_weight=cfg.codebook_weight,
        commitment_weight=cfg.commitment_weight,
        waveform_l1_weight=cfg.waveform_l1_weight,
        stft_weight=cfg.stft_weight,
    )


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (weight-norm g and v both count, as they are trained)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
