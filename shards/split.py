"""Deterministic train/validation split that never puts the same audio on both sides.

Three modes (``SplitConfig.mode``):

``file`` (default)
    Whole recordings go to one side. The side is decided by a stable hash of the
    recording's *group key* compared with ``val_fraction``: the key is the path relative to
    the input root, or the first match of ``group_regex`` in it (e.g. ``SPK[FM]\\d+`` keeps
    every recording of a speaker on one side). Same key, same side, on every machine and
    every run (sha256, not Python's salted ``hash``).
``list``
    Recordings named in ``val_list`` (one relative path or group key per line, ``#``
    comments) go to validation, everything else to training.
``time``
    For a handful of long recordings: the last ``val_seconds`` of *every* recording are
    validation, the ``gap_seconds`` before them are dropped (so no chunk on either side
    shares context across the boundary), the rest is training. Recordings not longer than
    ``val_seconds + gap_seconds`` go entirely to training.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

SPLIT_MODES = ("file", "list", "time")
TRAIN, VAL = "train", "val"


@dataclass(frozen=True)
class SplitConfig:
    """mode: one of ``SPLIT_MODES``. val_fraction: share of groups held out in ``file`` mode
    (0 <= f < 1). group_regex: pattern whose first match in the relative path is the group
    key (``file`` and ``list`` modes). val_list: text file of relative paths or group keys
    (``list`` mode). val_seconds / gap_seconds: held-out tail and the dropped gap before it,
    per recording, in source seconds (``time`` mode)."""

    mode: str = "file"
    val_fraction: float = 0.05
    group_regex: str | None = None
    val_list: str | None = None
    val_seconds: float = 300.0
    gap_seconds: float = 10.0

    def __post_init__(self):
        if self.mode not in SPLIT_MODES:
            raise ValueError(f"split mode {self.mode!r} must be one of {SPLIT_MODES}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if self.group_regex is not None:
            try:
                re.compile(self.group_regex)
            except re.error as e:
                raise ValueError(f"group_regex {self.group_regex!r} is not a regex: {e}") from e
        if self.mode == "list":
            if not self.val_list:
                raise ValueError("split mode 'list' needs val_list (a file of val recordings)")
            if not Path(self.val_list).is_file():
                raise ValueError(f"val_list {self.val_list!r} is not a file")
        if not self.val_seconds > 0:
            raise ValueError(f"val_seconds={self.val_seconds} must be > 0")
        if not self.gap_seconds >= 0:
            raise ValueError(f"gap_seconds={self.gap_seconds} must be >= 0")


@dataclass(frozen=True)
class Region:
    """A stretch of one recording in source seconds; ``split`` None means dropped (gap).
    ``end_s`` None means "to the end of the recording"."""

    split: str | None
    start_s: float
    end_s: float | None


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` alone (first 8 bytes of its sha256)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def read_list_file(path: str | os.PathLike) -> list[str]:
    """Non-empty lines of a text file, stripped, with ``#`` comments removed."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entries.append(line)
    return entries


class Splitter:
    """Applies a :class:`SplitConfig` to recordings named by their relative path."""

    def __init__(self, config: SplitConfig):
        self.config = config
        self._regex = re.compile(config.group_regex) if config.group_regex else None
        self._val_entries: set[str] = set()
        if config.mode == "list":
            self._val_entries = {e.replace("\\", "/") for e in read_list_file(config.val_list)}

    def group_key(self, rel_path: str) -> str:
        """The regex match in ``rel_path`` (group 1 if the pattern has a group), else the
        relative path itself."""
        if self._regex is not None:
            m = self._regex.search(rel_path)
            if m:
                return m.group(1) if m.groups() else m.group(0)
        return rel_path

    def side(self, rel_path: str) -> str:
        """``train`` or ``val`` for a whole recording (``file`` and ``list`` modes)."""
        if self.config.mode == "list":
            names = {rel_path, self.group_key(rel_path)}
            return VAL if names & self._val_entries else TRAIN
        if self.config.mode == "file":
            key = self.group_key(rel_path)
            return VAL if stable_fraction(key) < self.config.val_fraction else TRAIN
        raise ValueError("side() is per recording; time mode splits inside recordings")

    def regions(self, rel_path: str, duration_s: float) -> list[Region]:
        """The stretches of one recording and where each goes, covering [0, end) once."""
        if self.config.mode != "time":
            return [Region(self.side(rel_path), 0.0, None)]
        val, gap = self.config.val_seconds, self.config.gap_seconds
        if duration_s <= val + gap:
            return [Region(TRAIN, 0.0, None)]
        val_start = duration_s - val
        gap_start = val_start - gap
        regions = [Region(TRAIN, 0.0, gap_start)]
        if gap > 0:
            regions.append(Region(None, gap_start, val_start))
        regions.append(Region(VAL, val_start, None))
        return regions

    def unmatched_list_entries(self, rel_paths: list[str]) -> list[str]:
        """``val_list`` entries that name no input recording (likely typos)."""
        seen = set()
        for rel in rel_paths:
            seen.add(rel)
            seen.add(self.group_key(rel))
        return sorted(self._val_entries - seen)
