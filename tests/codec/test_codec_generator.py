"""Generator: shapes, hop, padding/cropping, output range, encode/decode, serialisation."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from codec.build import build_codec, count_parameters
from codec.config import CodecConfig


@pytest.mark.parametrize("length", [320 * 5, 320 * 5 + 17, 320 * 6 - 1])
def test_forward_pads_to_hop_and_crops_back(debug_codec_cfg, make_speech, length):
    codec = build_codec(debug_codec_cfg).eval()
    x = make_speech(1.0, batch=2)[..., :length]
    out = codec(x)
    frames = -(-length // 320)
    assert out.audio.shape == (2, 1, length)
    assert out.codes.shape == (2, 4, frames) and out.codes.dtype == torch.long
    assert out.z.shape == out.latents.shape == (2, codec.latent_dim, frames)
    assert out.commitment_loss.dim() == 0 and out.codebook_loss.dim() == 0
    assert out.n_quantizers_used.tolist() == [4, 4]


def test_odd_stride_decoder_is_sample_exact(debug_codec_cfg):
    # The 5 in (8, 5, 4, 2) would lose samples without output_padding.
    codec = build_codec(debug_codec_cfg).eval()
    codes = torch.randint(0, 64, (3, 2, 7))
    assert codec.decode(codes).shape == (3, 1, 7 * 320)


def test_encode_decode_matches_forward(debug_codec_cfg, make_speech):
    codec = build_codec(debug_codec_cfg).eval()
    x = make_speech(0.5, batch=2)
    with torch.no_grad():
        out = codec(x, n_quantizers=3)
    codes, latents = codec.encode(x, n_quantizers=3)
    assert torch.equal(codes, out.codes)
    torch.testing.assert_close(latents, out.latents)
    torch.testing.assert_close(codec.decode(codes)[..., : x.shape[-1]], out.audio)


def test_tanh_bounds_output_even_for_loud_input(debug_codec_cfg, make_speech):
    codec = build_codec(debug_codec_cfg).eval()
    assert isinstance(codec.decoder.model[-1], torch.nn.Tanh)
    with torch.no_grad():
        # Blow up the last conv so the pre-activation is far outside [-1, 1].
        codec.decoder.model[-2].parametrizations.weight.original0.mul_(1e4)
        y = codec(50 * make_speech(0.25)).audio
    assert y.abs().max() <= 1.0
    assert y.abs().max() > 0.99  # saturated, so the bound was actually exercised


def test_weight_norm_state_dict_and_deepcopy_roundtrip(debug_codec_cfg, make_speech):
    codec = build_codec(debug_codec_cfg).eval()
    keys = codec.state_dict().keys()
    assert any("parametrizations.weight.original0" in k for k in keys)
    assert "quantizer.usage_ema" in keys
    twin = copy.deepcopy(codec)
    buf = io.BytesIO()
    torch.save(codec.state_dict(), buf)
    buf.seek(0)
    fresh = build_codec(debug_codec_cfg).eval()
    fresh.load_state_dict(torch.load(buf))
    x = make_speech(0.25)
    with torch.no_grad():
        ref = codec(x).audio
        assert torch.equal(twin(x).audio, ref)
        assert torch.equal(fresh(x).audio, ref)


def test_latent_dim_default_and_override():
    cfg = CodecConfig(encoder_dim=4, decoder_dim=32, n_codebooks=2, codebook_size=16)
    assert build_codec(cfg).latent_dim == 4 * 16
    cfg = CodecConfig(encoder_dim=4, decoder_dim=32, n_codebooks=2, codebook_size=16, latent_dim=24)
    codec = build_codec(cfg)
    assert codec.latent_dim == 24 and codec.encoder.block[-1].out_channels == 24
    assert count_parameters(codec) == sum(p.numel() for p in codec.parameters())


def test_rejects_bad_audio_shape(debug_codec_cfg):
    codec = build_codec(debug_codec_cfg)
    with pytest.raises(ValueError, match="audio"):
        codec(torch.zeros(2, 640))
