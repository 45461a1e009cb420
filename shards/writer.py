"""Write one split's samples into WebDataset tar shards, atomically.

Each shard is written by ``webdataset.TarWriter`` under a hidden temporary name
(``.train-000003.tar.tmp``) and renamed to its final name (``train-000003.tar``) only when
it is complete and flushed to disk. A run killed midway therefore leaves complete shards
and at most one hidden temporary file, never a truncated ``*.tar`` that a reader would
take for a good one (and no ``manifest.json``, which prep writes last).

Tar headers carry a fixed mtime and owner, so the same samples give byte-identical shards.
Each shard's sha256 is computed from the bytes as they are written (no second read) and
recorded in its :class:`ShardInfo`, so ``telucodec-audit`` can tell a shard damaged later.

A write the machine refuses (no space, permission denied, read-only folder) raises
:class:`telucodec.errors.EnvironmentFault` naming the shard file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from shards.manifest import MANIFEST_NAME, ShardInfo
from telucodec.errors import environment_fault, is_environment_error

DEFAULT_MAX_SAMPLES = 256  # 10 s chunks: ~43 min of audio, ~100 MB of 24-bit FLAC a shard
DEFAULT_MAX_BYTES = 512 * 2**20
_TAR_BLOCK = 512


@contextlib.contextmanager
def environment_errors(path: str | os.PathLike, doing: str) -> Iterator[None]:
    """Turn an OSError the machine is at fault for into an EnvironmentFault naming
    ``path``; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if is_environment_error(e):
            raise environment_fault(e, path, doing) from e
        raise


class _HashingFile:
    """Write-only file wrapper that hashes (sha256) what goes through it."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _tar_member_bytes(payload: int) -> int:
    """Bytes one tar member takes: a 512-byte header plus data padded to 512."""
    return _TAR_BLOCK + -(-payload // _TAR_BLOCK) * _TAR_BLOCK


class ShardSetWriter:
    """Context manager writing ``<prefix>-%06d.tar`` shards into ``out_dir``.

    A new shard starts when the current one holds ``max_samples`` samples or the next
    sample would take it past ``max_bytes`` (a single larger sample still gets written,
    alone). ``shards`` lists what was written (name, samples, seconds), in order.
    If the ``with`` block raises, the unfinished shard is deleted, not renamed.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        prefix: str,
        *,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        if max_samples < 1:
            raise ValueError(f"max_samples={max_samples} must be >= 1")
        if max_bytes < 4 * _TAR_BLOCK:
            raise ValueError(f"max_bytes={max_bytes} is too small for a tar shard")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.shards: list[ShardInfo] = []
        self._file = None
        self._hashing: _HashingFile | None = None
        self._tar = None  # webdataset.TarWriter
        self._tmp: Path | None = None
        self._count = 0
        self._bytes = 0
        self._seconds = 0.0
        self._closed = False

    def __enter__(self) -> ShardSetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, key: str, flac: bytes, meta: dict, seconds: float) -> None:
        """Add one sample: ``<key>.flac`` (encoded audio) and ``<key>.json`` (``meta``).
        seconds: audio duration of the sample (for the manifest)."""
        if self._closed:
            raise RuntimeError("write() on a closed ShardSetWriter")
        if "." in key:
            raise ValueError(f"key {key!r} contains '.', which WebDataset treats as a suffix")
        meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
        size = _tar_member_bytes(len(flac)) + _tar_member_bytes(len(meta_bytes))
        if self._tar is not None and (
            self._count >= self.max_samples or self._bytes + size > self.max_bytes
        ):
            self._finish_shard()
        if self._tar is None:
            self._open_shard()
        with environment_errors(self._tmp, "writing shard"):
            self._tar.write({"__key__": key, "flac": flac, "json": meta_bytes})
        self._count += 1
        self._bytes += size
        self._seconds += seconds

    def close(self) -> list[ShardInfo]:
        """Finish the open shard (rename it into place) and return all shards written."""
        if not self._closed:
            if self._tar is not None:
                self._finish_shard()
            self._closed = True
        return self.shards

    def abort(self) -> None:
        """Drop the unfinished shard; shards already renamed stay."""
        if self._tar is not None:
            try:
                with contextlib.suppress(OSError):  # e.g. the disk is still full
                    self._tar.close()
                self._file.close()
            finally:
                self._tmp.unlink(missing_ok=True)
                self._tar = self._file = self._tmp = self._hashing = None
        self._closed = True

    def _open_shard(self) -> None:
        # Imported here: webdataset pulls in torch (~1 s), which prep's worker processes,
        # importing this package, do not need.
        import webdataset

        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        tmp = self.out_dir / f".{name}.tmp"
        with environment_errors(tmp, "creating shard"):
            self._file = open(tmp, "wb")  # noqa: SIM115 (closed in _finish_shard/abort)
        self._tmp = tmp
        self._hashing = _HashingFile(self._file)
        # encoder=False: payloads are already bytes; fixed mtime/owner: reproducible bytes.
        self._tar = webdataset.TarWriter(
            self._hashing, encoder=False, mtime=0.0, user="telucodec", group="telucodec"
        )
        self._count, self._bytes, self._seconds = 0, 2 * _TAR_BLOCK, 0.0  # + end marker

    def _finish_shard(self) -> None:
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        with environment_errors(self._tmp, "writing shard"):
            self._tar.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.out_dir / name)
        digest = self._hashing.sha.hexdigest()
        self.shards.append(
            ShardInfo(name=name, samples=self._count, seconds=self._seconds, sha256=digest)
        )
        self._tar = self._file = self._tmp = self._hashing = None


_OURS = re.compile(
    r"^(manifest\.json(\.tmp)?|report\.(json|md)|\.spool|(train|val)-\d{6}\.tar"
    r"|\.(train|val)-\d{6}\.tar\.tmp)$"
)


def prepare_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> None:
    """Create ``out_dir``; refuse a non-empty one unless ``overwrite``, and even then only
    delete what a prep run writes (never a folder of unrelated files).

    Raises FileExistsError (non-empty without ``overwrite``, or holding foreign files),
    NotADirectoryError, or EnvironmentFault (the folder cannot be created or cleared)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a folder")
    entries = sorted(out_dir.iterdir()) if out_dir.exists() else []
    if entries:
        if not overwrite:
            state = (
                "a finished shard set"
                if (out_dir / MANIFEST_NAME).exists()
                else "not a finished shard set (an interrupted run leaves no manifest.json)"
            )
            raise FileExistsError(
                f"{out_dir} is not empty ({state}); pass --overwrite to rebuild it "
                "or choose another --out"
            )
        foreign = [e.name for e in entries if not _OURS.match(e.name)]
        if foreign:
            raise FileExistsError(
                f"{out_dir} holds files telucodec-prep did not write ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); refusing to overwrite it"
            )
        for e in entries:
            with environment_errors(e, "removing the old prep output"):
                shutil.rmtree(e) if e.is_dir() else e.unlink()
    with environment_errors(out_dir, "creating the output folder"):
        out_dir.mkdir(parents=True, exist_ok=True)
