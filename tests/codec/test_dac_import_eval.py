"""``telucodec-eval --model`` takes a DAC weights file directly (imported on the fly): the
same model id and the same scores as evaluating the export ``telucodec-import`` writes."""

from __future__ import annotations

import json

import soundfile as sf
import torch

from codec.build import build_codec
from codec.dac_convert import config_from_dac_kwargs
from codec.dac_import import import_dac
from infer import eval as ev
from tests.codec.conftest import speech_like
from tests.codec.test_dac_import import TINY_KWARGS, to_dac_state


def test_eval_scores_a_dac_file_like_its_import(tmp_path, capsys):
    cfg, _ = config_from_dac_kwargs(TINY_KWARGS, "test")
    torch.manual_seed(11)
    weights = tmp_path / "weights.pth"
    state = to_dac_state(build_codec(cfg).state_dict())
    torch.save({"state_dict": state, "metadata": {"kwargs": TINY_KWARGS}}, weights)
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.wav", speech_like(1.5, seed=2)[0, 0].numpy(), 16000)
    export, _ = import_dac(weights, tmp_path / "export")

    def run(model, out):
        rc = ev.main(["--model", str(model), "--audio", str(audio), "--out", str(out),
                      "--n-q", "1,3", "--opus-kbps", "", "--jobs", "1", "--no-progress"])  # fmt: skip
        assert rc == 0
        return json.loads((out / "eval.json").read_text())

    direct, imported = run(weights, tmp_path / "direct"), run(export, tmp_path / "imported")
    assert direct["model"]["model_id"] == imported["model"]["model_id"]
    assert [r["snr_db"] for r in direct["results"]] == [r["snr_db"] for r in imported["results"]]
    capsys.readouterr()
    rc = ev.main(["--model", str(tmp_path / "missing.pth"), "--audio", str(audio),
                  "--out", str(tmp_path / "x")])  # fmt: skip
    assert rc == 2 and "missing.pth" in capsys.readouterr().err
