"""Find the recordings a prep run works on, in a deterministic order.

An input is a folder (searched recursively for .wav/.flac/.ogg/.mp3, any letter case), an
audio file, or a list file (``.txt``/``.lst``/``.list`` or no extension: one path per
line, relative to the list file's folder or absolute, ``#`` comments).

Folders are walked following symbolic links (a corpus is often assembled from links), each
real folder once: a link back to a folder already being walked (a loop) or already walked
is not entered again. Such folders, and folders that cannot be listed, are returned as
``skipped`` entries (path, reason), which the report lists.

Each recording gets ``rel``, its path relative to the input root (the folder when a single
folder is given, else the deepest folder common to all recordings), and ``file_id``,
``rel`` with every character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (keys must not
contain dots). Recordings are sorted by ``rel``, which fixes key order in the shards.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from shards.audio import SUPPORTED_EXTENSIONS
from shards.split import read_list_file

LIST_EXTENSIONS = (".txt", ".lst", ".list", "")


@dataclass(frozen=True)
class Source:
    path: str  # as given / found (absolute when from a list file)
    rel: str  # POSIX path relative to the input root
    file_id: str  # rel made key-safe; unique within a run


def is_audio_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


def header_duration(path: str | os.PathLike) -> float | None:
    """Seconds according to the file header, or None if it cannot be read."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate if info.frames > 0 and info.samplerate > 0 else 0.0
    except Exception:  # any failure just means "unknown"
        return None


_RIFF_CHUNKS_MAX = 64  # chunks before "data" we look through (fmt, LIST, fact, bext...)


def declared_wav_frames(path: str | os.PathLike) -> int | None:
    """Frames the RIFF/WAVE header's ``data`` chunk declares, or None when unknown (not a
    plain RIFF WAVE, no size: a streaming writer's 0 or 0xFFFFFFFF, unreadable).

    libsndfile reports the frames actually on disk for a WAV cut short, so the declared
    length has to be read here to notice the cut."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            for _ in range(_RIFF_CHUNKS_MAX):
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, size = hdr[:4], int.from_bytes(hdr[4:8], "little")
                if cid == b"fmt ":
                    fmt = f.read(min(size, 16))
                    if len(fmt) < 14:
                        return None
                    block_align = int.from_bytes(fmt[12:14], "little")
                    f.seek(size + (size & 1) - len(fmt), 1)
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None
    return None


def _walk(folder: Path, skipped: list[tuple[Path, str]]) -> list[Path]:
    """Audio files under ``folder``, following links to folders; each real folder is
    entered once (loops and second links to a folder are recorded in ``skipped``)."""
    found = []
    seen = {os.path.realpath(folder): folder}

    def unlistable(e: OSError) -> None:
        skipped.append((Path(e.filename or folder), f"cannot list folder: {e.strerror}"))

    for root, dirs, names in os.walk(folder, onerror=unlistable, followlinks=True):
        keep = []
        for d in sorted(dirs):
            sub = Path(root) / d
            real = os.path.realpath(sub)
            if real in seen:
                first = seen[real]
                loop = Path(root).resolve().is_relative_to(real)
                why = "symbolic link loop" if loop else "same folder as"
                skipped.append((sub, f"{why} {first} (not entered again)"))
                continue
            seen[real] = sub
            keep.append(d)
        dirs[:] = keep
        found.extend(Path(root) / n for n in sorted(names) if is_audio_name(n))
    return found


def discover_inputs(
    inputs: Sequence[str | os.PathLike],
    skipped: list[tuple[str, str]] | None = None,
) -> tuple[list[Source], list[tuple[str, str, str]]]:
    """Return (recordings sorted by rel, rejected entries as (rel, path, reason)).

    Rejected here: list-file entries or explicitly named files that do not exist or have
    an unsupported extension (a folder's non-audio files are simply not picked up).
    Folders not searched (link loops, a second link to the same folder, unlistable) are
    appended to ``skipped`` as (path, reason) when a list is given.
    Raises FileNotFoundError for an input argument that does not exist.
    """
    if not inputs:
        raise ValueError("no inputs given")
    found: list[Path] = []
    bad: list[tuple[Path, str]] = []
    not_walked: list[tuple[Path, str]] = []
    single_folder = None
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        single_folder = Path(inputs[0]).absolute()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(_walk(p, not_walked))
        elif p.is_file() and is_audio_name(p):
            found.append(p)
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            for line in read_list_file(p):
                entry = Path(line) if Path(line).is_absolute() else p.parent / line
                if not entry.is_file():
                    bad.append((entry, f"listed in {p} but not found"))
                elif not is_audio_name(entry):
                    bad.append((entry, f"unsupported extension {entry.suffix or '(none)'!r}"))
                else:
                    found.append(entry)
        elif p.is_file():
            bad.append((p, f"unsupported extension {p.suffix!r} (not audio, not a list file)"))
        else:
            raise FileNotFoundError(f"input {str(p)!r} does not exist")

    unique: dict[str, Path] = {}
    for f in found:
        unique.setdefault(os.path.realpath(f), f.absolute())
    paths = list(unique.values())
    everything = paths + [b.absolute() for b, _ in bad]
    if single_folder is not None:
        root = single_folder
    elif everything:
        root = Path(os.path.commonpath([str(q.parent) for q in everything]))
    else:
        root = Path.cwd()

    def rel(q: Path) -> str:
        return q.relative_to(root).as_posix() if q.is_relative_to(root) else q.as_posix()

    sources = sorted((Source(str(q), rel(q), "") for q in paths), key=lambda s: s.rel)
    ids = [re.sub(r"[^A-Za-z0-9_-]", "_", s.rel) for s in sources]
    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    out = []
    for s, fid in zip(sources, ids, strict=True):
        if counts[fid] > 1:  # e.g. "a b.wav" and "a_b.wav": disambiguate, stably
            fid = f"{fid}_{hashlib.sha1(s.rel.encode()).hexdigest()[:8]}"
        out.append(Source(s.path, s.rel, fid))
    rejected = sorted((rel(b.absolute()), str(b), why) for b, why in bad)
    if skipped is not None:
        skipped.extend((rel(q.absolute()), why) for q, why in not_walked)
    return out, rejected
