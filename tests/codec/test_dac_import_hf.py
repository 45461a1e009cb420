"""Importing Hugging Face DAC folders (transformers' ``DacModel`` + ``save_pretrained``).

Random ``DacModel`` instances (every parameter perturbed, so a swapped Snake or bias would
show) are saved with ``save_pretrained``, imported, and compared on the same input with
transformers' own encode/decode: codes identical, audio equal to float rounding over the
whole length, which is DAC's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codec.build import build_codec
from codec.dac_import import load_pretrained
from telucodec.errors import UserInputError
from tests.codec.conftest import speech_like

transformers = pytest.importorskip("transformers")

SMALL = dict(
    encoder_hidden_size=4,
    downsampling_ratios=[2, 4, 5, 8],
    decoder_hidden_size=32,
    n_codebooks=3,
    codebook_size=16,
    codebook_dim=4,
    sampling_rate=16000,
)


def hf_model(seed: int = 0, weight_norm: bool = False, **config):
    torch.manual_seed(seed)
    model = transformers.DacModel(transformers.DacConfig(**config)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
    if weight_norm:  # new-style parametrizations (what apply_weight_norm uses on torch 2.x)
        model.apply_weight_norm()
    return model


def check_exact(model, folder, seconds: float) -> None:
    rate = model.config.sampling_rate
    hop = int(np.prod(model.config.downsampling_ratios))
    n = int(seconds * rate) // hop * hop  # DacModel.encode does not pad
    x = speech_like(n / rate, rate)[..., :n]
    with torch.no_grad():
        ref_codes = model.encode(x).audio_codes
        ref_audio = model.decode(audio_codes=ref_codes).audio_values[:, None]
    pre = load_pretrained(folder)
    assert pre.kind == "huggingface" and pre.config.sample_rate == rate
    codec = build_codec(pre.config).eval()
    codec.load_state_dict(pre.state_dict)
    codes, _ = codec.encode(x)
    assert torch.equal(codes, ref_codes)
    y = codec.decode(ref_codes)
    assert y.shape == ref_audio.shape
    assert y.shape[-1] == codec.decoded_length(ref_codes.shape[-1])
    torch.testing.assert_close(y, ref_audio, rtol=0, atol=1e-5)


@pytest.mark.parametrize("weight_norm", [False, True], ids=["plain", "parametrizations"])
def test_small_hf_model_imports_exactly(tmp_path, weight_norm):
    model = hf_model(weight_norm=weight_norm, **SMALL)
    model.save_pretrained(tmp_path)
    check_exact(model, tmp_path, 0.6)


def test_even_strides_give_dac_length(tmp_path):
    model = hf_model(seed=1, **{**SMALL, "downsampling_ratios": [2, 4, 8, 8]})
    model.save_pretrained(tmp_path)
    check_exact(model, tmp_path, 0.3)


def test_16khz_architecture_imports_exactly(tmp_path):
    """descript/dac_16khz's architecture (the Hub model's config), random weights."""
    model = hf_model(
        encoder_hidden_size=64,
        downsampling_ratios=[2, 4, 5, 8],
        decoder_hidden_size=1536,
        n_codebooks=12,
        codebook_size=1024,
        codebook_dim=8,
        sampling_rate=16000,
    )
    model.save_pretrained(tmp_path)
    check_exact(model, tmp_path, 0.5)


def test_hf_errors_name_the_problem(tmp_path):
    model = hf_model(**SMALL)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "n_codebooks": 4}))
    with pytest.raises(UserInputError, match=r"quantizers\.3"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "encodec"}))
    with pytest.raises(UserInputError, match="model_type"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(UserInputError, match="no model.safetensors"):
        load_pretrained(tmp_path)
