"""End to end: generated recordings (every awkward case) -> shards -> read back and checked."""

from __future__ import annotations

import json
import re
import tarfile

import numpy as np
import pytest
import soundfile as sf

from shards import audio, cli, loudness, synth
from shards.chunking import cut
from shards.manifest import load_manifest
from shards.prep import PrepConfig, PrepError, prep_corpus
from shards.report import CATEGORIES
from shards.split import SplitConfig, Splitter
from shards.writer import ShardSetWriter

CEILING = 10 ** (-1 / 20)
LSB24 = 2.0**-23


def _corpus(folder):
    """One file per awkward case; returns {case: path}."""
    w = synth.write
    f = {
        "stereo48": w(
            folder / "SPKF01_talk_48k.wav",
            synth.multichannel(synth.speech_like(23.0, 48_000, seed=1, peak=0.5), 2),
            48_000,
            "PCM_16",
        ),
        "phone8k": w(
            folder / "sub" / "SPKM02_phone_8k.wav",
            synth.speech_like(12.0, 8_000, seed=2, peak=0.6),
            8_000,
            "PCM_16",
        ),
        "six96k": w(
            folder / "sub" / "SPKF03_studio_96k_6ch.flac",
            synth.multichannel(synth.speech_like(6.0, 96_000, seed=3, peak=0.3), 6),
            96_000,
            "PCM_24",
        ),
        "overs": w(
            folder / "SPKM04_overs.wav",
            synth.speech_like(11.0, 44_100, seed=4, peak=1.0129),
            44_100,
            "FLOAT",
        ),
        "dc": w(
            folder / "SPKF05_dc.wav",
            synth.speech_like(8.0, 16_000, seed=5, peak=0.3) + 0.25,
            16_000,
            "FLOAT",
        ),
        "quiet": w(
            folder / "SPKM06_quiet.flac",
            synth.speech_like(7.0, 22_050, seed=6, peak=0.01),
            22_050,
            "PCM_24",
        ),
        "silence": w(folder / "SPKF07_silence.wav", np.zeros(5 * 16_000), 16_000, "PCM_16"),
        "tiny": w(
            folder / "SPKM08_tiny.wav", synth.speech_like(0.6, 16_000, seed=8), 16_000, "PCM_16"
        ),
    }
    nan = synth.speech_like(4.0, 16_000, seed=9)
    nan[30_000] = np.nan
    f["nan"] = w(folder / "SPKF09_nan.wav", nan, 16_000, "FLOAT")
    f["corrupt"] = folder / "SPKM10_corrupt.wav"
    f["corrupt"].write_bytes(np.random.default_rng(0).bytes(8192))
    f["empty"] = folder / "SPKF11_empty.wav"
    f["empty"].write_bytes(b"")
    # A FLAC cut off at 60%: the header promises 25 s, decoding fails after ~15 s, i.e.
    # after its first chunk was already processed (which must then be discarded).
    full = synth.write(folder / "tmp.flac", synth.speech_like(25.0, 16_000, seed=10), 16_000)
    f["truncated"] = folder / "SPKM12_truncated.flac"
    data = full.read_bytes()
    f["truncated"].write_bytes(data[: int(len(data) * 0.6)])
    full.unlink()
    return f


@pytest.fixture(scope="module")
def run(tmp_path_factory, shard_reader):
    """The corpus prepped once (workers=1; determinism across workers is tested below)."""
    root = tmp_path_factory.mktemp("prep")
    files = _corpus(root / "in")
    unsupported = root / "in" / "notes.aiff"  # named explicitly: folder search skips it
    sf.write(unsupported, np.zeros(8000), 16_000, format="AIFF")
    config = PrepConfig(workers=1, split=SplitConfig(val_fraction=0.3))
    result = prep_corpus([root / "in", unsupported], root / "out", config, progress=False)
    return {
        "files": files,
        "result": result,
        "samples": shard_reader(root / "out"),
        "out": root / "out",
        "config": config,
    }


def test_every_input_second_accounted_for(run):
    report = run["result"].report
    for f in report["files"]:
        if f["duration_s"] is not None:
            assert sum(f["seconds"].values()) == pytest.approx(f["duration_s"], abs=1e-6)
    expected = (
        sum(
            sf.info(str(p)).duration
            for case, p in run["files"].items()
            if case not in ("corrupt", "empty")
        )
        + 0.5
    )  # notes.aiff: 8000 frames at 16 kHz, readable header, unsupported extension
    assert report["input"]["seconds"] == pytest.approx(expected, abs=1e-5)
    assert sum(report["seconds"][k] for k in CATEGORIES) == pytest.approx(expected, abs=1e-5)
    assert report["seconds"]["silence"] == pytest.approx(5.0, abs=1e-6)
    assert report["seconds"]["short_tail"] >= 0.6  # the tiny file, whole
    unknown = set(report["input"]["files_with_unknown_duration"])
    assert unknown == {"SPKM10_corrupt.wav", "SPKF11_empty.wav"}


def test_bad_files_are_rejected_with_reasons_and_the_run_goes_on(run):
    rejected = {r["source"]: r["reason"] for r in run["result"].report["rejected"]}
    assert set(rejected) == {
        "SPKF09_nan.wav",
        "SPKM10_corrupt.wav",
        "SPKF11_empty.wav",
        "SPKM12_truncated.flac",
        "notes.aiff",
    }
    assert "decoding failed after" in rejected["SPKM12_truncated.flac"]
    assert "NaN" in rejected["SPKF09_nan.wav"]
    assert "empty" in rejected["SPKF11_empty.wav"]
    assert "unsupported extension" in rejected["notes.aiff"]
    nothing = {r["source"] for r in run["result"].report["nothing_kept"]}
    assert nothing == {"SPKF07_silence.wav", "SPKM08_tiny.wav"}
    md = (run["out"] / "report.md").read_text()
    for name in list(rejected) + list(nothing):
        assert name in md
    # Files rejected midway leave nothing behind, and count whole as rejected.
    stored = {s["meta"]["source"] for s in run["samples"]}
    assert not stored & {"SPKF09_nan.wav", "SPKM12_truncated.flac"}
    per_file = {f["source"]: f for f in run["result"].report["files"]}
    assert per_file["SPKM12_truncated.flac"]["seconds"]["rejected"] == pytest.approx(25.0)
    assert per_file["SPKM12_truncated.flac"]["chunks_kept"] == 0


def test_shards_round_trip_keys_metadata_and_manifest(run):
    samples, manifest = run["samples"], load_manifest(run["out"])
    assert manifest.sample_rate == 16_000
    assert manifest.loudness_target_lufs == run["config"].loudness_target_lufs
    for split, info in manifest.splits.items():
        in_split = [s for s in samples if s["shard"].startswith(split + "-")]
        assert info.samples == len(in_split)
        assert info.seconds == pytest.approx(sum(len(s["audio"]) / 16_000 for s in in_split))
        assert all(s["meta"]["split"] == split for s in in_split)
    assert manifest.splits["train"].samples > 0 and manifest.splits["val"].samples > 0
    assert len({s["key"] for s in samples}) == len(samples)
    sources = {s["meta"]["source"] for s in samples}
    assert sources == {"SPKF01_talk_48k.wav", "sub/SPKM02_phone_8k.wav",
                       "sub/SPKF03_studio_96k_6ch.flac", "SPKM04_overs.wav", "SPKF05_dc.wav",
                       "SPKM06_quiet.flac"}  # fmt: skip
    for s in samples:
        m = s["meta"]
        assert s["key"] == f"{m['file_id']}-c{m['chunk']:05d}"
        assert re.fullmatch(r"[A-Za-z0-9_-]+", s["key"])
        assert s["rate"] == 16_000 and s["subtype"] == "PCM_24" and s["audio"].ndim == 1
        assert m["end_s"] - m["start_s"] == pytest.approx(len(s["audio"]) / 16_000, abs=1e-4)
        assert m["speaker"] == re.search(r"SPK[FM]\d+", m["source"]).group(0)
        info = sf.info(str(run["files"][_case(run, m["source"])]))
        assert (m["orig_rate"], m["orig_channels"]) == (info.samplerate, info.channels)
    # One recording is never split across train and val (default split = whole files).
    sides = {}
    for s in samples:
        sides.setdefault(s["meta"]["source"], set()).add(s["meta"]["split"])
    assert all(len(v) == 1 for v in sides.values())


def _case(run, rel):
    return next(c for c, p in run["files"].items() if p.as_posix().endswith(rel))


def test_stored_audio_is_what_the_pipeline_produced(run):
    """Recompute one recording with the library functions and compare to 24-bit precision."""
    cfg = run["config"]
    path = run["files"]["stereo48"]
    stored = [s for s in run["samples"] if s["meta"]["source"] == "SPKF01_talk_48k.wav"]
    regions = Splitter(cfg.split).regions("SPKF01_talk_48k.wav", sf.info(str(path)).duration)
    pieces = list(cut(audio.stream_conditioned(path, 16_000), regions, 16_000, 160_000, 16_000))
    assert [p.index for p in pieces] == [s["meta"]["chunk"] for s in stored] == [0, 1, 2]
    for p, s in zip(pieces, stored, strict=True):
        out, info = loudness.normalise(p.audio, 16_000, cfg.loudness_target_lufs)
        assert np.max(np.abs(s["audio"] - out)) <= LSB24
        assert s["meta"]["gain_db"] == pytest.approx(info.gain_db, abs=1e-4)


def test_levels_target_and_ceiling(run):
    target = run["config"].loudness_target_lufs
    for s in run["samples"]:
        x, m = s["audio"], s["meta"]
        assert np.max(np.abs(x)) <= CEILING + LSB24
        measured = loudness.integrated_loudness(x, 16_000)
        assert measured == pytest.approx(m["loudness_after_lufs"], abs=0.01)
        if not m["peak_guard"]:
            assert abs(measured - target) < 0.5
    quiet = [s for s in run["samples"] if s["meta"]["source"] == "SPKM06_quiet.flac"]
    assert quiet and quiet[0]["meta"]["gain_db"] > 20  # -40 dB source brought up


def test_overs_source_keeps_its_waveform(run):
    """The float file peaking at 1.0129: stored = conditioned source x one gain."""
    path = run["files"]["overs"]
    src = audio.load_conditioned(path, 16_000)
    stored = [s for s in run["samples"] if s["meta"]["source"] == "SPKM04_overs.wav"]
    assert len(stored) == 2  # 10 s + 1 s tail
    for s in stored:
        m = s["meta"]
        a, b = round(m["start_s"] * 16_000), round(m["end_s"] * 16_000)
        expected = src[a:b] * 10 ** (m["gain_db"] / 20)
        assert np.max(np.abs(s["audio"] - expected)) < 1e-4
        assert np.max(np.abs(s["audio"])) < 1.0


def test_dc_offset_gone_in_shards(run):
    (s,) = [s for s in run["samples"] if s["meta"]["source"] == "SPKF05_dc.wav"]
    assert abs(np.mean(s["audio"][8000:])) < 1e-3


def test_determinism_across_worker_counts(tmp_path):
    src = tmp_path / "in"
    for i, rate in enumerate([16_000, 44_100, 48_000, 8_000]):
        x = synth.speech_like(4.0 + 3 * i, rate, seed=20 + i, peak=0.4)
        synth.write(src / f"rec{i}.wav", x, rate, "PCM_16")
    cfg = dict(split=SplitConfig(val_fraction=0.5), max_shard_samples=3)
    a = prep_corpus(src, tmp_path / "w1", PrepConfig(workers=1, **cfg), progress=False)
    b = prep_corpus(src, tmp_path / "w2", PrepConfig(workers=2, **cfg), progress=False)
    names = sorted(p.name for p in (tmp_path / "w1").glob("*.tar"))
    assert len(names) >= 3
    assert names == sorted(p.name for p in (tmp_path / "w2").glob("*.tar"))
    for n in names:
        assert (tmp_path / "w1" / n).read_bytes() == (tmp_path / "w2" / n).read_bytes()
    assert a.manifest.to_dict() == b.manifest.to_dict()


def test_16_bit_shards_hold_the_same_audio_to_16_bit_precision(tmp_path, shard_reader):
    src = tmp_path / "in"
    synth.write(src / "rec.wav", synth.speech_like(6.0, 44_100, seed=3, peak=0.5), 44_100, "PCM_16")
    cfg = dict(split=SplitConfig(val_fraction=0.0), workers=1)
    prep_corpus(src, tmp_path / "s24", PrepConfig(**cfg), progress=False)
    prep_corpus(src, tmp_path / "s16", PrepConfig(flac_bits=16, **cfg), progress=False)
    a, b = shard_reader(tmp_path / "s24"), shard_reader(tmp_path / "s16")
    assert [s["key"] for s in a] == [s["key"] for s in b] and a
    for x, y in zip(a, b, strict=True):
        assert (x["subtype"], y["subtype"]) == ("PCM_24", "PCM_16")
        assert np.max(np.abs(x["audio"] - y["audio"])) <= 2**-16  # half an LSB at 16 bits
    size = {d: sum(p.stat().st_size for p in (tmp_path / d).glob("*.tar")) for d in ("s16", "s24")}
    assert size["s16"] < size["s24"]


def test_time_split_holds_out_the_tail_with_a_gap(tmp_path, shard_reader):
    src = tmp_path / "in"
    for i in range(2):
        synth.write(src / f"long{i}.flac", synth.speech_like(65.0, 16_000, seed=30 + i), 16_000)
    split = SplitConfig(mode="time", val_seconds=20.0, gap_seconds=5.0)
    res = prep_corpus(src, tmp_path / "out", PrepConfig(workers=1, split=split), progress=False)
    samples = shard_reader(tmp_path / "out")
    for i in range(2):
        mine = [s["meta"] for s in samples if s["meta"]["source"] == f"long{i}.flac"]
        train = [m for m in mine if m["split"] == "train"]
        val = [m for m in mine if m["split"] == "val"]
        assert max(m["end_s"] for m in train) == pytest.approx(40.0)
        assert min(m["start_s"] for m in val) == pytest.approx(45.0)
        assert max(m["end_s"] for m in val) == pytest.approx(65.0)
    assert res.report["seconds"]["split_gap"] == pytest.approx(10.0, abs=1e-6)
    assert res.report["seconds"]["kept_val"] == pytest.approx(40.0, abs=1e-6)
    assert res.report["seconds"]["kept_train"] == pytest.approx(80.0, abs=1e-6)


def test_list_inputs_and_group_split(tmp_path, shard_reader):
    src = tmp_path / "in"
    for spk in range(6):
        for take in range(2):
            x = synth.speech_like(2.0, 16_000, seed=spk * 10 + take)
            synth.write(src / f"SPKF{spk:02d}_take{take}.wav", x, 16_000, "PCM_16")
    lst = tmp_path / "files.txt"
    lst.write_text("# two speakers only\nin/SPKF00_take0.wav\nin/SPKF00_take1.wav\n"
                   "in/SPKF01_take0.wav\n\nin/missing.wav\n")  # fmt: skip
    cfg = PrepConfig(workers=1, split=SplitConfig(val_fraction=0.5, group_regex=r"SPKF\d+"))
    res = prep_corpus(lst, tmp_path / "out", cfg, progress=False)
    samples = shard_reader(tmp_path / "out")
    assert sorted({s["meta"]["source"] for s in samples}) == [
        "SPKF00_take0.wav",
        "SPKF00_take1.wav",
        "SPKF01_take0.wav",
    ]
    by_spk = {}
    for s in samples:
        by_spk.setdefault(s["meta"]["speaker"], set()).add(s["meta"]["split"])
    assert all(len(v) == 1 for v in by_spk.values())
    assert [r["reason"] for r in res.report["rejected"]] == [f"listed in {lst} but not found"]


def test_refuses_non_empty_out_dir_and_overwrites_only_its_own(tmp_path):
    src = tmp_path / "in"
    synth.write(src / "a.wav", synth.speech_like(3.0, 16_000), 16_000, "PCM_16")
    out = tmp_path / "out"
    first = prep_corpus(src, out, PrepConfig(workers=1), progress=False)
    with pytest.raises(PrepError, match="not empty.*--overwrite"):
        prep_corpus(src, out, PrepConfig(workers=1), progress=False)
    again = prep_corpus(src, out, PrepConfig(workers=1, overwrite=True), progress=False)
    assert again.manifest.to_dict() == first.manifest.to_dict()
    (out / "precious.txt").write_text("not ours")
    with pytest.raises(PrepError, match="precious.txt"):
        prep_corpus(src, out, PrepConfig(workers=1, overwrite=True), progress=False)
    assert (out / "precious.txt").exists() and (out / "manifest.json").exists()


def test_interrupted_run_leaves_no_manifest_and_no_unfinished_shard(tmp_path, monkeypatch):
    src = tmp_path / "in"
    for i in range(3):
        synth.write(src / f"r{i}.wav", synth.speech_like(25.0, 16_000, seed=i), 16_000, "PCM_16")
    out = tmp_path / "out"
    real_write = ShardSetWriter.write
    calls = {"n": 0}

    def dying_write(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # the user hits Ctrl-C mid-shard
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(ShardSetWriter, "write", dying_write)
    cfg = PrepConfig(workers=1, max_shard_samples=2, split=SplitConfig(val_fraction=0.0))
    with pytest.raises(KeyboardInterrupt):
        prep_corpus(src, out, cfg, progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert "manifest.json" not in names
    assert names == ["train-000000.tar", "train-000001.tar"]  # complete, renamed shards only
    for n in names:
        with tarfile.open(out / n) as tar:
            assert len(tar.getnames()) == 4  # 2 samples x (flac + json), readable to the end
    monkeypatch.undo()
    with pytest.raises(PrepError, match="interrupted run leaves no manifest"):
        prep_corpus(src, out, cfg, progress=False)
    res = prep_corpus(src, out, PrepConfig(**{**cfg.__dict__, "overwrite": True}), progress=False)
    assert res.manifest.splits["train"].samples == 9


def test_writer_keeps_unfinished_shard_hidden(tmp_path):
    w = ShardSetWriter(tmp_path, "train", max_samples=2)
    for i in range(3):
        w.write(f"k{i}", b"fLaC" + bytes(100), {"i": i}, 1.0)
    # Mid-write: one finished shard under its final name, the open one hidden as .tmp.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".train-000001.tar.tmp",
        "train-000000.tar",
    ]
    assert [p.name for p in tmp_path.glob("*.tar")] == ["train-000000.tar"]
    shards = w.close()
    assert [(s.name, s.samples, s.seconds) for s in shards] == [
        ("train-000000.tar", 2, 2.0),
        ("train-000001.tar", 1, 1.0),
    ]
    with tarfile.open(tmp_path / "train-000001.tar") as tar:
        assert tar.getnames() == ["k2.flac", "k2.json"]
        assert json.loads(tar.extractfile("k2.json").read()) == {"i": 2}
    with pytest.raises(ValueError, match="contains '.'"):
        ShardSetWriter(tmp_path, "val").write("a.b", b"", {}, 0.0)


def test_nothing_usable_is_an_error_but_still_reported(tmp_path, capsys):
    src = tmp_path / "in"
    synth.write(src / "silent.wav", np.zeros(16_000 * 3), 16_000, "PCM_16")
    (src / "junk.wav").write_bytes(b"RIFF not really")
    out = tmp_path / "out"
    with pytest.raises(PrepError, match="nothing usable"):
        prep_corpus(src, out, PrepConfig(workers=1), progress=False)
    assert (out / "report.md").exists() and not (out / "manifest.json").exists()
    assert cli.main([str(src), "--out", str(tmp_path / "out2"), "--quiet"]) == 1
    assert "nothing usable" in capsys.readouterr().err


def test_cli(tmp_path, capsys):
    src = tmp_path / "in"
    synth.write(src / "SPKM01_a.wav", synth.speech_like(12.0, 48_000), 48_000, "PCM_16")
    out = tmp_path / "out"
    args = [str(src), "--out", str(out), "--quiet", "--workers", "1", "--chunk-seconds", "5"]
    assert cli.main(args + ["--target-lufs", "-23"]) == 0
    printed = capsys.readouterr().out
    assert "kept: train 12.0 s" in printed and "wrote 1 shards" in printed
    m = load_manifest(out)
    assert (m.loudness_target_lufs, m.chunk_seconds, m.splits["train"].samples) == (-23.0, 5.0, 3)
    assert cli.main(args) == 1  # out dir not empty, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(args + ["--overwrite", "--silence-floor-lufs", "-10"]) == 2
    assert "silence_floor_lufs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--out", str(out)])  # no input


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"target_rate": 4000}, "target_rate"),
        ({"chunk_seconds": 0.5}, "chunk_seconds"),
        ({"min_chunk_seconds": 0.1}, "min_chunk_seconds"),
        ({"loudness_target_lufs": 3}, "loudness_target_lufs"),
        ({"peak_ceiling_dbfs": 1}, "peak_ceiling_dbfs"),
        ({"workers": 0}, "workers"),
        ({"speaker_regex": "("}, "speaker_regex"),
        ({"flac_bits": 8}, "flac_bits"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PrepConfig(**kwargs)
