"""The training mel spec in ``codec.json``: written when known, read back as a
:class:`MelSpec`, optional for exports that lack it, refused (naming the file) when damaged."""

from __future__ import annotations

import json

import pytest
import torch

from codec.build import build_codec
from codec.config import CodecConfig, MelSpec
from codec.export_format import ExportError, load_exported, mel_spec, read_export
from codec.export_format import export_state_dict as export

TINY = dict(encoder_dim=4, decoder_dim=32, n_codebooks=2, codebook_size=16, codebook_dim=4)
# Every field away from its default, fmax included (None -> a number survives JSON).
SPEC = MelSpec(
    n_mels=(20, 40),
    window_lengths=(256, 512),
    hop_factor=0.5,
    clamp_eps=1e-6,
    pow=2.0,
    log_weight=0.5,
    mag_weight=1.0,
    fmin=40.0,
    fmax=7000.0,
)


@pytest.fixture(scope="module")
def weights():
    torch.manual_seed(0)
    cfg = CodecConfig(**TINY)
    return build_codec(cfg).state_dict(), cfg


def test_the_spec_round_trips_as_a_typed_value(weights, tmp_path):
    state, cfg = weights
    export(state, cfg, -26.0, -1.0, tmp_path, mel=SPEC)
    _, _, meta = read_export(tmp_path)
    got = mel_spec(meta)
    assert isinstance(got, MelSpec) and got == SPEC  # tuples again, not JSON lists


def test_an_export_without_a_spec_loads_and_says_so(weights, tmp_path):
    """An older export (or a DAC import) has no ``mel`` key: it loads, and the spec is None
    so the caller picks its default knowingly. Dropping the key keeps the model id valid:
    the id names the weights and architecture, not how they were scored."""
    state, cfg = weights
    with_spec = export(state, cfg, -26.0, -1.0, tmp_path / "a", mel=SPEC)
    meta = json.loads((with_spec / "codec.json").read_text())
    del meta["mel"]
    (with_spec / "codec.json").write_text(json.dumps(meta))
    codec, loaded = load_exported(with_spec)
    assert mel_spec(loaded) is None and codec is not None
    plain = export(state, cfg, -26.0, -1.0, tmp_path / "b")  # no spec given: none written
    assert "mel" not in json.loads((plain / "codec.json").read_text())
    assert loaded["model_id"] == read_export(plain)[2]["model_id"]


@pytest.mark.parametrize(
    "bad", [{"n_mels": [10, 20], "window_lengths": [64]}, {"no_such_field": 1}, [1, 2]]
)
def test_a_damaged_spec_is_refused_at_load_naming_codec_json(weights, tmp_path, bad):
    state, cfg = weights
    export(state, cfg, -26.0, -1.0, tmp_path, mel=SPEC)
    meta = json.loads((tmp_path / "codec.json").read_text())
    meta["mel"] = bad
    (tmp_path / "codec.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match=r"codec\.json: damaged"):
        read_export(tmp_path)
