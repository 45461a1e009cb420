"""Every second accounted for and every input seen: MP3 lengths, truncated WAVs, linked
folders, a split that training can use, progress lines in a log."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from shards import synth
from shards.inputs import declared_wav_frames
from shards.prep import PrepConfig, prep_corpus
from shards.report import CATEGORIES
from telucodec.progress import LineProgress, progress

ROOT = Path(__file__).resolve().parents[2]


def _wav(path: Path, seconds: float, rate: int = 16_000, seed: int = 0) -> Path:
    return synth.write(path, synth.speech_like(seconds, rate, seed=seed), rate, "PCM_16")


def _sums_to_input(report: dict) -> None:
    for f in report["files"]:
        assert sum(f["seconds"].values()) == pytest.approx(f["duration_s"], abs=1e-6), f
    total = sum(report["seconds"][k] for k in CATEGORIES)
    assert total == pytest.approx(report["input"]["seconds"], abs=1e-6)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_mp3_seconds_all_land_in_a_category(tmp_path):
    """A CBR MP3 without a Xing header: libsndfile's header length is an estimate, longer
    than what decodes (130416 vs 130176 samples here)."""
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3")
    src = tmp_path / "in"
    for i, secs in enumerate((4.0, 11.3)):
        wav = _wav(tmp_path / f"w{i}.wav", secs, 32_000, seed=i)
        src.mkdir(exist_ok=True)
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", wav, "-write_xing", "0", src / f"c{i}.mp3"],
            check=True,
        )
    res = prep_corpus(src, tmp_path / "out", PrepConfig(workers=1), progress=False)
    files = res.report["files"]
    assert all(f["header_duration_s"] is not None for f in files)  # the estimates differ
    assert all(f["header_duration_s"] > f["duration_s"] for f in files)
    assert not res.report["length_warnings"]  # a few ms of decoder padding: no alarm
    _sums_to_input(res.report)
    decoded = sum(len(sf.read(str(p))[0]) / 32_000 for p in sorted(src.iterdir()))
    assert res.report["input"]["seconds"] == pytest.approx(decoded, abs=1e-6)


def test_truncated_wav_is_kept_and_noted(tmp_path, caplog):
    src = tmp_path / "in"
    full = _wav(tmp_path / "full.wav", 20.0)
    data = full.read_bytes()
    (src).mkdir()
    (src / "cut.wav").write_bytes(data[: 44 + 10 * 16_000 * 2])  # header says 20 s
    assert declared_wav_frames(src / "cut.wav") == 20 * 16_000
    assert declared_wav_frames(full) == 20 * 16_000
    assert sf.info(str(src / "cut.wav")).duration == pytest.approx(10.0)  # libsndfile: on disk
    res = prep_corpus(src, tmp_path / "out", PrepConfig(workers=1), progress=False)
    (f,) = res.report["files"]
    assert f["status"] == "ok" and f["duration_s"] == pytest.approx(10.0)
    assert f["header_duration_s"] == pytest.approx(20.0)
    assert "header says 20.000 s but 10.000 s of audio were decoded" in f["warning"]
    assert res.report["length_warnings"] == [{"source": "cut.wav", "warning": f["warning"]}]
    assert "truncated" in (tmp_path / "out" / "report.md").read_text()
    assert any("cut.wav: header says 20.000 s" in r.getMessage() for r in caplog.records)
    assert "length of cut.wav" in res.summary
    _sums_to_input(res.report)


def test_recordings_behind_a_linked_folder_are_found_and_loops_listed(tmp_path, caplog):
    elsewhere = tmp_path / "elsewhere"
    _wav(elsewhere / "linked.wav", 2.0, seed=1)
    src = tmp_path / "in"
    _wav(src / "own.wav", 2.0, seed=2)
    (src / "more").symlink_to(elsewhere, target_is_directory=True)
    (src / "sub").mkdir()
    (src / "sub" / "loop").symlink_to(src, target_is_directory=True)  # in/sub/loop -> in
    res = prep_corpus(src, tmp_path / "out", PrepConfig(workers=1), progress=False)
    assert sorted(f["source"] for f in res.report["files"]) == ["more/linked.wav", "own.wav"]
    assert res.report["skipped"] == [
        {"path": "sub/loop", "reason": f"symbolic link loop {src} (not entered again)"}
    ]
    assert "Folders not searched" in (tmp_path / "out" / "report.md").read_text()
    assert any("not searched: sub/loop" in r.getMessage() for r in caplog.records)


def test_one_long_recording_gets_a_validation_split(tmp_path, caplog):
    """The defaults (file split, 5%) would send the only recording to one side."""
    src = tmp_path / "in"
    _wav(src / "lecture.wav", 80.0)
    res = prep_corpus(src, tmp_path / "out", PrepConfig(workers=1), progress=False)
    m = res.manifest
    assert m.splits["val"].samples >= 1 and m.splits["train"].samples >= 1
    assert res.report["split_note"].startswith("all 1 recording(s) form one group")
    assert m.prep_config["split"]["mode"] == "time"
    assert res.report["seconds"]["kept_val"] == pytest.approx(10.0, abs=1e-6)
    assert res.report["split_warning"] is None
    assert any("form one group" in r.getMessage() for r in caplog.records)
    assert (
        "**Split:** all 1 recording(s) form one group" in (tmp_path / "out/report.md").read_text()
    )
    assert "split: all 1 recording(s)" in res.summary
    _sums_to_input(res.report)


def test_a_split_left_without_validation_says_so(tmp_path, caplog):
    src = tmp_path / "in"
    _wav(src / "short.wav", 12.0)  # too short to hold anything out
    res = prep_corpus(src, tmp_path / "out", PrepConfig(workers=1), progress=False)
    assert res.manifest.splits["val"].samples == 0
    assert res.report["split_warning"].startswith("the val split is empty")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["split_warning"] == res.report["split_warning"]
    assert "**Split:** the val split is empty" in (tmp_path / "out/report.md").read_text()
    assert any("the val split is empty" in r.getMessage() for r in caplog.records)


def test_line_progress_writes_plain_lines_at_its_interval():
    now = [0.0]
    out = io.StringIO()
    bar = LineProgress(2.0, "prep", "h", out, fmt="{:.2f}", interval_s=10.0, clock=lambda: now[0])
    for _ in range(100):  # 100 updates over 25 s: a line at 10 s and 20 s, and one at close
        now[0] += 0.25
        bar.update(0.01)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [
        "prep:  20% 0.40/2.00 h, 00:10 elapsed",
        "prep:  40% 0.80/2.00 h, 00:20 elapsed",
        "prep:  50% 1.00/2.00 h, 00:25 elapsed",
    ]
    assert isinstance(progress(1, "x", "h", file=io.StringIO()), LineProgress)


def test_prep_progress_into_a_pipe_has_no_carriage_returns(tmp_path):
    src = tmp_path / "in"
    for i in range(12):
        _wav(src / f"clip{i:02d}.wav", 1.5, seed=i)
    proc = subprocess.run(
        [sys.executable, "-m", "shards.cli", str(src), "--out", str(tmp_path / "out")]
        + ["--workers", "1"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    progress_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("prep:")]
    assert "\r" not in proc.stderr
    assert 1 <= len(progress_lines) <= 3  # a line per 10 s and the last one
    assert progress_lines[-1].startswith("prep: 100%")
