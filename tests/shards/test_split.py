"""Train/val split (never the same audio on both sides) and chunk cutting (every sample once)."""

from __future__ import annotations

import numpy as np
import pytest

from shards.chunking import CHUNK, SHORT_TAIL, SPLIT_GAP, cut
from shards.split import TRAIN, VAL, Region, SplitConfig, Splitter, stable_fraction


def test_stable_fraction_is_deterministic_and_uniform():
    keys = [f"spk{i:04d}/rec.wav" for i in range(4000)]
    values = np.array([stable_fraction(k) for k in keys])
    assert values.tolist() == [stable_fraction(k) for k in keys]
    assert ((values >= 0) & (values < 1)).all()
    assert np.mean(values < 0.05) == pytest.approx(0.05, abs=0.015)
    assert np.histogram(values, bins=10, range=(0, 1))[0].min() > 300


def test_file_mode_keeps_groups_on_one_side():
    rels = [
        f"emo{e}/S{s:02d}_SPK{'F' if s % 2 else 'M'}{s:02d}_take{t}.flac"
        for e in range(3)
        for s in range(40)
        for t in range(3)
    ]
    sp = Splitter(SplitConfig(mode="file", val_fraction=0.2, group_regex=r"SPK[FM]\d+"))
    sides: dict[str, set] = {}
    for r in rels:
        sides.setdefault(sp.group_key(r), set()).add(sp.side(r))
    assert all(len(s) == 1 for s in sides.values())  # no speaker on both sides
    n_val = sum(VAL in s for s in sides.values())
    assert 0 < n_val < len(sides)
    # Without a regex each recording is its own group: still deterministic.
    plain = Splitter(SplitConfig(mode="file", val_fraction=0.2))
    assert [plain.side(r) for r in rels] == [plain.side(r) for r in rels]
    assert plain.group_key(rels[0]) == rels[0]


def test_list_mode(tmp_path):
    lst = tmp_path / "val.txt"
    lst.write_text("# held out\na/one.wav\nSPKF07  # a whole speaker\nmissing.wav\n")
    sp = Splitter(SplitConfig(mode="list", val_list=str(lst), group_regex=r"SPK[FM]\d+"))
    assert sp.side("a/one.wav") == VAL
    assert sp.side("a/two.wav") == TRAIN
    assert sp.side("b/SPKF07_x.wav") == VAL
    assert sp.unmatched_list_entries(["a/one.wav", "b/SPKF07_x.wav"]) == ["missing.wav"]


def test_time_mode_regions():
    sp = Splitter(SplitConfig(mode="time", val_seconds=60.0, gap_seconds=5.0))
    assert sp.regions("x.wav", 1000.0) == [
        Region(TRAIN, 0.0, 935.0),
        Region(None, 935.0, 940.0),
        Region(VAL, 940.0, None),
    ]
    assert sp.regions("short.wav", 50.0) == [Region(TRAIN, 0.0, None)]
    no_gap = Splitter(SplitConfig(mode="time", val_seconds=60.0, gap_seconds=0.0))
    assert [r.split for r in no_gap.regions("x.wav", 1000.0)] == [TRAIN, VAL]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"mode": "random"}, "split mode"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"group_regex": "SPK("}, "group_regex"),
        ({"mode": "list"}, "val_list"),
        ({"val_seconds": 0}, "val_seconds"),
        ({"gap_seconds": -1}, "gap_seconds"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SplitConfig(**kwargs)


def _blocks(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i : i + size]


def _check_cover(pieces, n):
    pos = 0
    for p in pieces:
        assert p.start == pos
        pos = p.end
    assert pos == n
    assert pieces[-1].final and not any(p.final for p in pieces[:-1])


@pytest.mark.parametrize("block", [7, 100, 1000, 10_000])
def test_cut_covers_every_sample_once_whatever_the_block_size(block):
    rate, n = 100, 2345  # 23.45 s at 100 Hz: 2 chunks of 10 s + a 3.45 s tail
    x = np.arange(n, dtype=np.float32)
    pieces = list(cut(_blocks(x, block), [Region(TRAIN, 0.0, None)], rate, 1000, 100))
    _check_cover(pieces, n)
    assert [p.kind for p in pieces] == [CHUNK, CHUNK, CHUNK]
    assert [p.index for p in pieces] == [0, 1, 2]
    for p in pieces:
        np.testing.assert_array_equal(p.audio, x[p.start : p.end])


def test_cut_short_tail_and_exact_multiple():
    rate = 100
    pieces = list(
        cut(_blocks(np.zeros(2050, np.float32), 64), [Region(TRAIN, 0, None)], rate, 1000, 100)
    )
    assert [(p.kind, p.end - p.start) for p in pieces] == [
        (CHUNK, 1000),
        (CHUNK, 1000),
        (SHORT_TAIL, 50),
    ]
    pieces = list(
        cut(_blocks(np.zeros(2000, np.float32), 64), [Region(TRAIN, 0, None)], rate, 1000, 100)
    )
    assert [(p.kind, p.end - p.start) for p in pieces] == [(CHUNK, 1000), (CHUNK, 1000)]
    assert pieces[-1].final


def test_cut_time_split_has_gap_and_no_overlap():
    rate, n = 100, 10_000  # 100 s
    sp = Splitter(SplitConfig(mode="time", val_seconds=25.0, gap_seconds=5.0))
    x = np.arange(n, dtype=np.float32)
    pieces = list(cut(_blocks(x, 333), sp.regions("r.wav", n / rate), rate, 1000, 100))
    _check_cover(pieces, n)
    train = [p for p in pieces if p.split == TRAIN]
    val = [p for p in pieces if p.split == VAL]
    gap = [p for p in pieces if p.kind == SPLIT_GAP]
    assert max(p.end for p in train) == 7000
    assert [(p.start, p.end) for p in gap] == [(7000, 7500)]
    assert min(p.start for p in val) == 7500
    assert [p.end - p.start for p in val] == [1000, 1000, 500]
    assert len({p.index for p in train + val}) == len(train + val)  # keys stay unique
