"""The shard set's manifest: the one file the trainer, the reader and inference read.

A shard set is a folder::

    manifest.json        written last, so a folder without it is an unfinished prep run
    report.json          what prep kept, dropped and rejected (and why), in seconds
    report.md            the same, for people
    train-000000.tar     WebDataset shards; each sample is
    val-000000.tar         <key>.flac  mono, ``sample_rate`` Hz, 24-bit PCM (lossless for
                                       16-bit sources after gain)
                           <key>.json  per-chunk metadata (see ``shards.recording.ChunkMeta``)

Keys are ``<file_id>-c<chunk index:05d>``; ``file_id`` is the source path relative to the
input root with every character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (WebDataset
splits keys at the first dot, so keys never contain one).

Shard names come from a file that may have been edited or sent by someone else, and a
``pipe:`` shard base hands them to a shell; so a name must be exactly what prep writes
(``train-000042.tar``: no path, no spaces, no shell syntax), and is shell-quoted anyway when
it goes into a ``pipe:`` command. A manifest with any other name is refused as a whole.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from telucodec.errors import UserInputError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val")
# what shards.writer.ShardWriter names its tars: "<split>-%06d.tar" (more digits past 999999)
SHARD_NAME = re.compile(rf"(?:{'|'.join(SPLITS)})-[0-9]{{6,}}\.tar")


class ManifestError(UserInputError, ValueError):
    """A manifest that cannot be used (malformed, another version, a shard name prep does not
    write); the message names the manifest file."""


class ManifestNotFound(ManifestError, FileNotFoundError):
    """The folder has no ``manifest.json`` (not a finished prep output)."""


def check_shard_name(name: object, split: str, source: str) -> str:
    """``name`` if it is a shard name prep writes, else :class:`ManifestError` naming
    ``source`` (the manifest). A name reaches a shell under a ``pipe:`` shard base."""
    if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
        raise ManifestError(
            f"{source}: shard name {name!r} in split {split!r} is not one telucodec-prep writes "
            "(<split>-NNNNNN.tar); refusing the manifest"
        )
    return name


@dataclass
class ShardInfo:
    """One tar file: its name inside the shard folder, sample count, audio seconds, and the
    sha256 (hex) of its bytes as prep wrote them (None in manifests from before it was
    recorded); ``telucodec-audit`` checks it."""

    name: str
    samples: int
    seconds: float
    sha256: str | None = None


@dataclass
class SplitInfo:
    shards: list[ShardInfo] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.shards)


@dataclass
class Manifest:
    """What every consumer of a shard set must agree on.

    sample_rate: Hz of every stored chunk.
    loudness_target_lufs: the BS.1770 integrated loudness every kept chunk was normalised
        to (chunks the peak guard lowered are quieter, and flagged in their metadata).
        Training and inference read the level from here, never from a default.
    peak_ceiling_dbfs: sample-peak ceiling the peak guard enforced.
    chunk_seconds: nominal chunk length (the last chunk of a recording may be shorter).
    """

    sample_rate: int
    loudness_target_lufs: float
    peak_ceiling_dbfs: float
    chunk_seconds: float
    splits: dict[str, SplitInfo] = field(default_factory=lambda: {s: SplitInfo() for s in SPLITS})
    prep_config: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        for name, split in self.splits.items():
            d["splits"][name]["samples"] = split.samples
            d["splits"][name]["seconds"] = round(split.seconds, 3)
        d["total_samples"] = sum(s.samples for s in self.splits.values())
        d["total_seconds"] = round(sum(s.seconds for s in self.splits.values()), 3)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "manifest") -> Manifest:
        """Read a manifest's JSON object; ``source`` (its path) is named in every error."""
        if not isinstance(d, dict):
            raise ManifestError(f"{source}: malformed manifest (not a JSON object)")
        if d.get("format_version") != FORMAT_VERSION:
            raise ManifestError(
                f"{source}: manifest format_version {d.get('format_version')!r} is not supported "
                f"(this TeluCodec reads version {FORMAT_VERSION})"
            )
        splits = {
            name: SplitInfo([ShardInfo(**s) for s in split["shards"]])
            for name, split in d["splits"].items()
        }
        for name, split in splits.items():
            for shard in split.shards:
                check_shard_name(shard.name, name, source)
        return cls(
            sample_rate=int(d["sample_rate"]),
            loudness_target_lufs=float(d["loudness_target_lufs"]),
            peak_ceiling_dbfs=float(d["peak_ceiling_dbfs"]),
            chunk_seconds=float(d["chunk_seconds"]),
            splits=splits,
            prep_config=d.get("prep_config", {}),
        )

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``manifest.json`` atomically (temp file + rename)."""
        path = Path(folder) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(tmp, path)
        return path

    def shard_urls(
        self, split: str, base: str | os.PathLike | None = None, source: str = "manifest"
    ) -> list[str]:
        """Shard locations for ``split``: paths under ``base``, a folder or a URL prefix
        (``https://host/set``), or a template holding ``{name}``
        (``pipe:aws s3 cp s3://bucket/set/{name} -``). Every name is checked against
        :data:`SHARD_NAME` (:class:`ManifestError` naming ``source`` otherwise) and quoted
        for the shell when ``base`` is a ``pipe:`` command."""
        names = [check_shard_name(s.name, split, source) for s in self.splits[split].shards]
        if base is None:
            return names
        base = str(base)
        if base.startswith("pipe:"):
            names = [shlex.quote(n) for n in names]
        if "{name}" in base:
            return [base.replace("{name}", n) for n in names]
        return [base.rstrip("/") + "/" + n for n in names]


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read a manifest from a shard folder or from the ``manifest.json`` path itself."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    if not p.exists():
        raise ManifestNotFound(
            f"{p}: no manifest. Is this a finished `telucodec-prep` output folder? "
            "(the manifest is written last, so an interrupted prep run has none)"
        )
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{p}: cannot read the manifest ({e})") from e
    try:
        return Manifest.from_dict(json.loads(text), source=str(p))
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        if isinstance(e, ManifestError):
            raise
        raise ManifestError(f"{p}: malformed manifest ({type(e).__name__}: {e})") from e
