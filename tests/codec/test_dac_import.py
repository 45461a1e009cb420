"""Importing DAC's own weights files: exact against descript-audio-codec, and strict.

The exactness tests build randomly initialised DAC models with descript-audio-codec itself
(in ``.venv-ref``, through ``_dac_reference.py``), saved with DAC's own ``save()``, and
compare our import on the same input: codes identical, decoded audio (from DAC's codes)
equal to float rounding over the whole length, which is DAC's. They skip
when ``.venv-ref`` is absent. The strictness tests write DAC-format files from our own
model, so they always run.
"""

from __future__ import annotations

import json
import math
import subprocess
import zipfile

import numpy as np
import pytest
import torch

from codec.build import build_codec
from codec.config import CodecConfig
from codec.dac_convert import DAC_RELEASED, config_from_dac_kwargs
from codec.dac_import import import_dac, load_pretrained, main
from codec.export_format import load_exported
from telucodec.errors import UserInputError
from tests.benchmarks.test_refs import REF_PYTHON, REF_VENV
from tests.codec.conftest import speech_like

needs_ref = pytest.mark.skipif(
    not (REF_PYTHON.exists() and (REF_VENV / ".installed").exists()),
    reason=".venv-ref (descript-audio-codec) not installed; `make refs` builds it",
)

TINY_KWARGS = dict(
    encoder_dim=4,
    encoder_rates=[2, 4, 5, 8],
    decoder_dim=32,
    decoder_rates=[8, 5, 4, 2],
    n_codebooks=3,
    codebook_size=16,
    codebook_dim=4,
    quantizer_dropout=False,
    sample_rate=16000,
)


def dac_reference(kwargs: dict, x: torch.Tensor, out, seed: int = 0):
    """Run descript-audio-codec on ``x``: (weights file, codes, decoded audio)."""
    np.save(out / "x.npy", x.numpy())
    subprocess.run(
        [
            str(REF_PYTHON),
            "tests/codec/_dac_reference.py",
            json.dumps(kwargs),
            str(out / "x.npy"),
            str(out),
            str(seed),
        ],  # fmt: skip
        check=True,
        timeout=600,
        capture_output=True,
        env={"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PATH": "/usr/bin:/bin"},
    )
    return out / "weights.pth", np.load(out / "codes.npy"), np.load(out / "audio.npy")


def check_exact(weights, x, ref_codes, ref_audio, kwargs) -> None:
    pre = load_pretrained(weights)
    assert pre.kind == "dac"
    cfg = pre.config
    assert cfg.sample_rate == kwargs["sample_rate"]
    assert cfg.encoder_rates == tuple(kwargs["encoder_rates"])
    assert cfg.n_codebooks == kwargs["n_codebooks"]
    codec = build_codec(cfg).eval()
    codec.load_state_dict(pre.state_dict)
    codes, _ = codec.encode(x)
    np.testing.assert_array_equal(codes.numpy(), ref_codes)
    y = codec.decode(torch.from_numpy(ref_codes)).numpy()
    # the whole of DAC's output, whose length F*hop - 8 (16/24 kHz) our decoder shares
    assert y.shape == ref_audio.shape
    assert y.shape[-1] == codec.decoded_length(ref_codes.shape[-1])
    np.testing.assert_allclose(y, ref_audio, rtol=0, atol=1e-5)


@needs_ref
@pytest.mark.slow  # about 20-30 s each: 74-76 M parameter models built, saved and read
@pytest.mark.parametrize(
    ("preset", "seconds"),
    [("16khz", 1.0), ("24khz", 0.4), ("44khz", 0.25)],
)
def test_released_architectures_import_exactly(tmp_path, preset, seconds):
    """The released 16/24/44.1 kHz configurations (random weights), through DAC's save()."""
    kwargs = DAC_RELEASED[preset]
    x = speech_like(seconds, kwargs["sample_rate"])
    weights, codes, audio = dac_reference(kwargs, x, tmp_path)
    check_exact(weights, x, codes, audio, kwargs)
    weights.unlink()  # 300 MB; pytest keeps recent tmp folders
    frames = codes.shape[-1]
    tail = {"16khz": 8, "24khz": 8, "44khz": 0}[preset]  # odd stride 5 at 16/24 kHz only
    assert audio.shape[-1] == frames * math.prod(kwargs["encoder_rates"]) - tail


@needs_ref
def test_cli_import_of_dac_file_round_trips_through_the_export(tmp_path, capsys):
    x = speech_like(0.6, 16000, seed=3)
    weights, codes, audio = dac_reference(TINY_KWARGS, x, tmp_path, seed=5)
    assert main(["dac", str(weights), "--out", str(tmp_path / "exp")]) == 0
    printed = capsys.readouterr().out
    assert "quantizer_dropout" in printed and "-16 LUFS" in printed
    codec, meta = load_exported(tmp_path / "exp")
    assert meta["loudness_target_lufs"] == -16.0
    assert meta["codec"]["quantizer_dropout"] == 0.0
    assert meta["imported_from"]["kind"] == "dac"
    np.testing.assert_array_equal(codec.encode(x)[0].numpy(), codes)
    y = codec.decode(torch.from_numpy(codes)).numpy()
    assert y.shape == audio.shape
    np.testing.assert_allclose(y, audio, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- strictness


def to_dac_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state_dict in DAC's naming (legacy weight norm), without our own buffer."""
    out = {}
    for k, v in state.items():
        if k == "quantizer.usage_ema":
            continue
        k = k.replace(".parametrizations.weight.original0", ".weight_g")
        out[k.replace(".parametrizations.weight.original1", ".weight_v")] = v.clone()
    return out


@pytest.fixture
def tiny_dac(tmp_path):
    """A DAC-format weights file made from our tiny codec, and that codec's state."""
    cfg, _ = config_from_dac_kwargs(TINY_KWARGS, "test")
    state = build_codec(cfg).state_dict()

    def write(sd=None, kwargs=None, name="w.pth", **extra):
        blob = {
            "state_dict": to_dac_state(state) if sd is None else sd,
            "metadata": {"kwargs": dict(TINY_KWARGS) if kwargs is None else kwargs, **extra},
        }
        torch.save(blob, tmp_path / name)
        return tmp_path / name

    return write, state


def test_dac_naming_maps_one_to_one(tiny_dac):
    write, state = tiny_dac
    pre = load_pretrained(write())
    assert pre.state_dict.keys() == state.keys()
    for k, v in state.items():
        if k != "quantizer.usage_ema":
            assert torch.equal(pre.state_dict[k], v), k
    assert torch.equal(pre.state_dict["quantizer.usage_ema"], torch.ones(3, 16))
    assert pre.loudness_target_lufs == -16.0
    assert any("quantizer_dropout" in n and "0.5" in n for n in pre.notes)


def test_extra_tensor_is_named(tiny_dac):
    write, state = tiny_dac
    sd = to_dac_state(state)
    sd["quantizer.quantizers.3.codebook.weight"] = torch.zeros(16, 4)
    with pytest.raises(UserInputError, match=r"quantizer\.quantizers\.3\.codebook\.weight"):
        load_pretrained(write(sd))


def test_unknown_tensor_is_named(tiny_dac):
    write, state = tiny_dac
    sd = to_dac_state(state)
    sd["decoder.model.0.running_mean"] = torch.zeros(4)
    with pytest.raises(UserInputError, match=r"decoder\.model\.0\.running_mean"):
        load_pretrained(write(sd))


def test_missing_tensor_is_named(tiny_dac):
    write, state = tiny_dac
    sd = to_dac_state(state)
    del sd["decoder.model.2.block.1.weight_v"]
    with pytest.raises(UserInputError, match=r"decoder\.model\.2\.block\.1"):
        load_pretrained(write(sd))


def test_wrong_shape_is_named(tiny_dac):
    write, state = tiny_dac
    sd = to_dac_state(state)
    sd["encoder.block.0.bias"] = torch.zeros(5)
    with pytest.raises(UserInputError, match=r"encoder\.block\.0\.bias.*\[5\].*\[4\]"):
        load_pretrained(write(sd))


def test_metadata_that_disagrees_with_the_tensors_is_refused(tiny_dac):
    write, _ = tiny_dac
    with pytest.raises(UserInputError, match="shape"):
        load_pretrained(write(kwargs={**TINY_KWARGS, "decoder_dim": 64}))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"codebook_dim": [4, 4, 8]}, "different dimensions"),
        ({"encoder_rates": [1, 4, 5, 16]}, "stride 1"),
        ({"use_transformer": True}, "use_transformer"),
        ({"decoder_rates": [8, 5, 4, 4]}, "decoder_rates"),
    ],
)
def test_architectures_we_lack_are_refused(tiny_dac, change, words):
    write, _ = tiny_dac
    with pytest.raises(UserInputError, match=words):
        load_pretrained(write(kwargs={**TINY_KWARGS, **change}))


def test_pickled_code_is_never_executed(tmp_path, tiny_dac):
    write, state = tiny_dac
    path = write(extra_object=CodecConfig())  # a class instance: needs full unpickling
    with pytest.raises(UserInputError, match=r"weights_only=True\) refuses"):
        load_pretrained(path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserInputError, match="junk.pth: not readable as a DAC weights file"):
        load_pretrained(tmp_path / "junk.pth")
    with zipfile.ZipFile(tmp_path / "package.pth", "w") as z:  # torch.package-like: no data.pkl
        z.writestr("package/.data/version", "6\n")
    with pytest.raises(UserInputError, match="torch.package"):
        load_pretrained(tmp_path / "package.pth")


def test_cli_errors_are_one_line_exit_2(tmp_path, tiny_dac, capsys):
    write, state = tiny_dac
    sd = to_dac_state(state)
    sd["encoder.block.0.bias"] = torch.zeros(5)
    assert main(["dac", str(write(sd)), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("telucodec-import: error:") and "\n" not in err
    assert "encoder.block.0.bias" in err
    assert main(["dac", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_import_refuses_to_overwrite_an_export(tmp_path, tiny_dac):
    write, _ = tiny_dac
    import_dac(write(), tmp_path / "exp")
    with pytest.raises(UserInputError, match="already holds an export"):
        import_dac(write(), tmp_path / "exp")


def test_import_is_deterministic(tmp_path, tiny_dac):
    """The same weights give the same model id (eval imports on the fly and must agree)."""
    write, _ = tiny_dac
    a, _ = import_dac(write(), tmp_path / "a")
    b, _ = import_dac(write(), tmp_path / "b")
    ida = json.loads((a / "codec.json").read_text())["model_id"]
    assert ida == json.loads((b / "codec.json").read_text())["model_id"]
