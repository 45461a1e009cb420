"""telucodec-eval end to end on two generated files; the shared MR-STFT metric."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from codec.metrics import stft_distance
from infer import eval as ev
from infer import opus
from tests.infer._inferdata import SR, speech


def test_stft_distance_zero_for_copy_and_grows_with_noise():
    x = torch.from_numpy(speech(1.0))[None]
    noise = torch.randn_like(x)
    d0 = stft_distance(x, x)
    d1 = stft_distance(x, x + 0.01 * noise)
    d2 = stft_distance(x, x + 0.1 * noise)
    assert d0.shape == (1,) and d0.item() < 1e-6
    assert 0 < d1.item() < d2.item()


def test_eval_cli_end_to_end(tmp_path, tiny_export, capsys):
    src = tmp_path / "audio"
    src.mkdir()
    sf.write(src / "a.wav", speech(2.0, seed=1), SR)
    y = soxr.resample(speech(1.5, seed=2, rms=0.01), SR, 48000)  # other rate, level, stereo
    sf.write(src / "b.flac", np.stack([y, y], 1), 48000)
    (src / "c.wav").write_bytes(b"not audio")  # skipped, with the reason recorded
    kbps = "6,24" if opus.available() else ""
    rc = ev.main(["--model", str(tiny_export), "--audio", str(src), "--out",
                  str(tmp_path / "out"), "--n-q", "1,4", "--opus-kbps", kbps,
                  "--no-progress"])  # fmt: skip
    assert rc == 0
    out = tmp_path / "out"
    result = json.loads((out / "eval.json").read_text())
    assert [s["reason"] for s in result["skipped"]] and "c.wav" in result["skipped"][0]["file"]
    systems = {(e["system"], e["kbps"]) for e in result["summary"]}
    expected = {("telucodec", 0.3), ("telucodec", 1.2)}
    if kbps:
        expected |= {("opus", 6.0), ("opus", 24.0)}
    assert systems == expected
    assert len(result["results"]) == 2 * len(expected)
    for r in result["results"]:
        for m in ("snr_db", "si_snr_db", "mel_distance", "stft_distance", "stoi", "rms_ratio"):
            assert math.isfinite(r[m]), (r["system"], m)
    if kbps:
        opus24 = next(e for e in result["summary"] if e["system"] == "opus" and e["kbps"] == 24)
        assert opus24["pesq_wb"] > 3.0 and opus24["stoi"] > 0.9  # a known codec scores well
    md = (out / "eval.md").read_text()
    assert "| telucodec (n_q=4) | 1.2 |" in md and md in capsys.readouterr().out
    # level by band, from all files' energies together
    assert result["band_names"][0] == "0-60Hz" and "Level out/in by frequency band" in md
    for e in result["summary"]:
        assert set(e["band_levels"]) == set(result["band_names"])
    if kbps:
        opus24 = next(e for e in result["summary"] if e["system"] == "opus" and e["kbps"] == 24)
        assert 0.8 < opus24["band_levels"]["250-500Hz"] < 1.25
    assert (out / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_rejects_bad_bitrate(tmp_path, tiny_export, capsys):
    (tmp_path / "a.wav").write_bytes(b"")
    rc = ev.main(["--model", str(tiny_export), "--audio", str(tmp_path), "--out",
                  str(tmp_path / "o"), "--kbps", "6"])  # fmt: skip
    assert rc == 2 and "outside this codec's range" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["nonexistent"])
def test_eval_missing_folder(tmp_path, tiny_export, capsys, bad):
    rc = ev.main(["--model", str(tiny_export), "--audio", str(tmp_path / bad), "--out",
                  str(tmp_path / "o")])  # fmt: skip
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_eval_logs_table_and_plot_to_wandb_offline(tmp_path, tiny_export, monkeypatch):
    """Without an API key the run is offline under --out (no network, nothing asked), and it
    holds the summary table, the per-file table and the plot."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key
    src = tmp_path / "audio"
    src.mkdir()
    sf.write(src / "a.wav", speech(1.5, seed=3), SR)
    out = tmp_path / "out"
    rc = ev.main(["--model", str(tiny_export), "--audio", str(src), "--out", str(out),
                  "--n-q", "2", "--opus-kbps", "", "--no-progress",
                  "--wandb-project", "telucodec-eval-test"])  # fmt: skip
    assert rc == 0
    (run,) = (out / "wandb").glob("offline-run-*")
    tables = {p.name.split("_")[0]: p for p in run.glob("files/media/table/eval/*.table.json")}
    assert set(tables) == {"summary", "files"}
    summary = json.loads(tables["summary"].read_text())
    assert summary["columns"][:2] == ["system", "kbps"] and summary["data"][0][0] == "telucodec"
    assert list(run.glob("files/media/images/eval/plot_*.png"))


def test_eval_survives_a_broken_wandb(tmp_path, tiny_export, monkeypatch, capsys):
    import wandb

    def broken(**_):
        raise RuntimeError("no route to host")

    monkeypatch.setattr(wandb, "init", broken)
    src = tmp_path / "audio"
    src.mkdir()
    sf.write(src / "a.wav", speech(1.0, seed=4), SR)
    rc = ev.main(["--model", str(tiny_export), "--audio", str(src), "--out",
                  str(tmp_path / "out"), "--n-q", "1", "--opus-kbps", "", "--no-progress",
                  "--wandb-project", "p"])  # fmt: skip
    assert rc == 0 and (tmp_path / "out" / "eval.json").is_file()
    assert "W&B logging failed (RuntimeError: no route to host)" in capsys.readouterr().err


def test_worker_processes_give_the_same_results_in_the_same_order(tmp_path, tiny_export):
    """--jobs N scores in worker processes; rows keep the serial order and values agree to
    float32 rounding (one thread per worker vs the caller's threads)."""
    from infer.api import TeluCodec

    src = tmp_path / "audio"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"{i}.wav", speech(1.5, seed=10 + i), SR)
    (src / "3.wav").write_bytes(b"broken")
    tc = TeluCodec.load(tiny_export, "cpu")
    files = ev.find_audio(src)
    kbps = [12.0] if opus.available() else []
    one = ev.evaluate(tc, files, [1, 4], kbps, progress=False, jobs=1)
    two = ev.evaluate(tc, files, [1, 4], kbps, progress=False, jobs=2)
    assert one["skipped"] == two["skipped"] and len(one["skipped"]) == 1
    assert len(one["results"]) == 3 * (2 + len(kbps)) == len(two["results"])
    for a, b in zip(one["results"], two["results"], strict=True):
        assert (a["system"], a["kbps"], a["file"]) == (b["system"], b["kbps"], b["file"])
        for m in ("snr_db", "mel_distance", "stft_distance", "stoi", "rms_ratio"):
            assert math.isclose(a[m], b[m], rel_tol=1e-5, abs_tol=1e-6), (m, a[m], b[m])


def test_a_failing_worker_job_is_reported_not_lost(tmp_path, tiny_export, monkeypatch):
    """An Opus failure inside a worker process reaches the caller as the error naming the
    tool (here an opusenc that fails, first on PATH)."""
    from infer.api import TeluCodec

    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("opusenc", "opusdec"):
        (fake / tool).write_text("#!/bin/sh\necho 'cannot open input' >&2\nexit 1\n")
        (fake / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    sf.write(tmp_path / "a.wav", speech(1.0, seed=3), SR)
    tc = TeluCodec.load(tiny_export, "cpu")
    with pytest.raises(RuntimeError, match="opusenc failed .*cannot open input"):
        ev.evaluate(tc, [tmp_path / "a.wav"], [1], [12.0], progress=False, jobs=2)


def test_stoi_of_a_clip_too_short_to_score_is_undefined_not_zero():
    """pystoi returns 1e-5 ("unintelligible") for under 384 ms of speech; the Telugu set has
    such a clip (0.38 s). Averaged in, it pulled a 102-file mean STOI down by 1%."""
    x = speech(0.3, seed=5)
    with pytest.warns(UserWarning, match="STOI undefined"):
        row = ev.score(x, x * 0.9, SR)
    assert math.isnan(row["stoi"])
    long = ev.score(speech(1.5, seed=5), speech(1.5, seed=5) * 0.9, SR)
    assert long["stoi"] > 0.99  # a scaled copy is perfectly intelligible


def test_summary_means_leave_undefined_values_out_and_say_so():
    from infer.report import markdown, summarise

    rows = [
        {"system": "opus", "kbps": 6.0, "file": "a", "stoi": 0.9, "pesq_wb": 2.0},
        {"system": "opus", "kbps": 6.0, "file": "b", "stoi": math.nan, "pesq_wb": 3.0},
    ]
    (entry,) = summarise(rows, ("stoi", "pesq_wb"))
    assert entry["stoi"] == 0.9 and entry["pesq_wb"] == 2.5
    assert entry["undefined"] == {"stoi": 1} and entry["files"] == 2
    filled = {m: 0.0 for m in ("mel_distance", "stft_distance", "si_snr_db", "snr_db",
                               "rms_ratio", "est_peak")}  # fmt: skip
    result = {"summary": [{**entry, **filled}], "files": ["a", "b"], "skipped": [],
              "model": {"model_id": "m"}}  # fmt: skip
    assert "Undefined, so left out of those means: STOI on 1 file(s)" in markdown(result)


def test_segment_bounds_cover_the_file_without_short_tails():
    assert ev.segment_bounds(100, 30) == [(0, 30), (30, 60), (60, 100)]  # 10-sample tail joins
    assert ev.segment_bounds(110, 30) == [(0, 30), (30, 60), (60, 90), (90, 110)]
    assert ev.segment_bounds(45, 30) == [(0, 45)]  # up to 1.5 segments: one piece
    assert ev.segment_bounds(10**6, 0) == [(0, 10**6)]


def test_long_files_are_scored_in_pieces_weighted_by_duration():
    x = speech(4.4, seed=7)
    y = 0.8 * x + 0.01 * np.random.default_rng(1).standard_normal(len(x)).astype(np.float32)
    y[100] = 0.9  # a click in piece one: the file's peak is the largest piece peak
    got = ev.score_long(x, y, SR, SR)  # 1 s pieces: 1, 1, 1, 1.4 s (the tail joins)
    pieces = [(b - a, ev.score(x[a:b], y[a:b], SR)) for a, b in ev.segment_bounds(len(x), SR)]
    assert got["segments"] == 4 == len(pieces)
    for m in ("mel_distance", "snr_db", "stoi", "rms_ratio"):
        want = sum(n * p[m] for n, p in pieces) / len(x)
        assert math.isclose(got[m], want, rel_tol=1e-9), m
    assert got["est_peak"] == max(p["est_peak"] for _, p in pieces) == pieces[0][1]["est_peak"]
    short = speech(1.0, seed=7)
    assert ev.score_long(short, short * 0.5, SR, SR) == {
        **ev.score(short, short * 0.5, SR),
        "segments": 1,
    }


def test_eval_measures_mel_distance_with_the_exports_training_spec(tmp_path, tiny_export):
    """An export recording its run's ``loss.mel`` is scored with that spec (what validation
    ranked by); one without (DAC import, older export) falls back to the default spec, and
    eval.json and eval.md say which was used."""
    from codec.config import MelSpec
    from codec.export_format import export_state_dict, read_export
    from codec.metrics import mel_distance
    from infer.api import TeluCodec
    from infer.report import write_outputs
    from shards.audio import load_conditioned

    spec = MelSpec(n_mels=(20, 40), window_lengths=(256, 512), mag_weight=1.0)
    state, cfg, meta = read_export(tiny_export)  # the same weights, now with a spec
    level = meta["loudness_target_lufs"], meta["peak_ceiling_dbfs"]
    export_state_dict(state, cfg, *level, tmp_path / "m", mel=spec)
    wav = tmp_path / "a.wav"
    sf.write(wav, speech(1.5, seed=4), SR)
    audio = load_conditioned(wav, SR)  # the reference eval scores against
    x = torch.from_numpy(audio)[None]
    want = {}
    for name, path in (("export", tmp_path / "m"), ("default", tiny_export)):
        tc = TeluCodec.load(path, "cpu")
        y = tc.decode(tc.encode(audio, SR, n_quantizers=4), n_quantizers=4)
        y = torch.from_numpy(np.ascontiguousarray(y, np.float32))[None]
        want[name] = {
            s: mel_distance(x, y, SR, m).item() for s, m in (("own", spec), ("dac", None))
        }
        result = ev.evaluate(tc, [wav], [4], [], progress=False)
        (row,) = result["results"]
        assert result["model"]["mel_spec"]["source"] == name
        md = write_outputs(result, tmp_path / name)["md"].read_text()
        if name == "export":
            assert math.isclose(row["mel_distance"], want[name]["own"], rel_tol=1e-5)
            assert tuple(result["model"]["mel_spec"]["n_mels"]) == (20, 40)
            assert "the model's training mel spec (codec.json), window/mels 256/20, 512/40" in md
        else:
            assert math.isclose(row["mel_distance"], want[name]["dac"], rel_tol=1e-5)
            assert "the default mel spec" in md
    # the two specs really measure differently here, so the test tells them apart
    assert abs(want["export"]["own"] - want["export"]["dac"]) > 0.1 * want["export"]["dac"]
