"""Generator: shapes, hop, padding/cropping, output range, encode/decode, serialisation."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from codec.build import build_codec, count_parameters
from codec.config import CodecConfig


@pytest.mark.parametrize(
    ("length", "frames"),
    # a whole number of frames needs one more: DAC's decoder makes F*320 - 8 samples
    [(320 * 5 - 8, 5), (320 * 5 - 7, 6), (320 * 5, 6), (320 * 5 + 17, 6), (320 * 6 - 1, 7)],
)
def test_forward_pads_to_frames_and_crops_back(debug_codec_cfg, make_speech, length, frames):
    codec = build_codec(debug_codec_cfg).eval()
    x = make_speech(1.0, batch=2)[..., :length]
    out = codec(x)
    assert codec.frames_for(length) == frames
    assert out.audio.shape == (2, 1, length)
    assert out.codes.shape == (2, 4, frames) and out.codes.dtype == torch.long
    assert out.z.shape == out.latents.shape == (2, codec.latent_dim, frames)
    assert out.commitment_loss.dim() == 0 and out.codebook_loss.dim() == 0
    assert out.n_quantizers_used.tolist() == [4, 4]


@pytest.mark.parametrize(
    ("rates", "tail"),
    [((8, 5, 4, 2), 8), ((8, 8, 4, 2), 0), ((5, 4, 4, 4), 64), ((3, 5, 4, 4), 96)],
)
def test_decoded_length_is_frames_times_hop_minus_the_odd_strides_shortfall(rates, tail):
    """Each odd-stride layer (DAC's kernel 2r, padding ceil(r/2)) drops one position; the
    shortfall at the output is the same for every frame count."""
    hop = math.prod(rates)
    cfg = CodecConfig(
        encoder_dim=4,
        encoder_rates=rates[::-1],
        decoder_dim=32,
        decoder_rates=rates,
        n_codebooks=2,
        codebook_size=16,
        codebook_dim=4,
    )
    codec = build_codec(cfg).eval()
    assert codec.tail == tail
    for frames in (1, 2, 7):
        y = codec.decode(torch.randint(0, 16, (1, 2, frames)))
        assert y.shape[-1] == codec.decoded_length(frames) == frames * hop - tail
    for length in (1, hop - tail, hop - tail + 1, hop, 3 * hop + 5):
        x = torch.randn(1, 1, length)
        assert codec.encode(x)[0].shape[-1] == -(-length // hop)  # DAC's frame count
        assert codec(x).audio.shape[-1] == length  # forward pads to frames_for(length)
        assert codec.decoded_length(codec.frames_for(length)) >= length
        assert codec.decoded_length(codec.frames_for(length) - 1) < length  # and no more


def test_encode_decode_matches_forward(debug_codec_cfg, make_speech):
    codec = build_codec(debug_codec_cfg).eval()
    # 25 frames less the decoder's 8-sample shortfall: forward and encode then use the same
    # 25 frames (at exactly 25 * 320 samples forward needs a 26th to cover the input)
    x = make_speech(0.5, batch=2)[..., : 25 * 320 - 8]
    assert codec.frames_for(x.shape[-1]) == -(-x.shape[-1] // 320) == 25
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
