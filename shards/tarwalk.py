"""A lean, forward-only walk over the members of an uncompressed tar stream.

Why not ``tarfile`` (which webdataset's ``tar_file_iterator`` uses)? Speed, on a hot path:
the reader walks one tar header pair per 10 s chunk, and with short crops that walk is a
large share of a worker's time. ``tarfile`` builds a full ``TarInfo`` (every field, pax
records through a regex) per header: about 0.19 ms per sample on the 2-core dev box, against
0.04 ms here, which is the difference between meeting the 1000x-real-time bar per worker and
not. What we parse is what ``tarfile`` (hence webdataset's ``TarWriter``) and GNU/BSD tar
write: ustar headers with checksums, POSIX pax extended headers (``path``, ``size``) and GNU
long names. Anything else that is not a regular file (directories, links, devices, pax
global headers) is skipped; a bad checksum or a short read is an error, never a silent stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from telucodec.errors import UserInputError

BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")  # regular file, old-style regular file, contiguous file
_SKIP_CHUNK = 1 << 20


class TarFormatError(UserInputError, ValueError):
    """The stream is not an uncompressed tar, or it is corrupt or truncated."""


class TarMember:
    """One regular file of the tar: ``name`` and ``size`` (bytes). Call :meth:`read` for its
    data before advancing the walk; unread data is skipped (seeked over when possible)."""

    __slots__ = ("name", "size", "_walk", "_read")

    def __init__(self, name: str, size: int, walk: TarWalk):
        self.name, self.size, self._walk, self._read = name, size, walk, False

    def read(self) -> bytes:
        if self._read:
            raise RuntimeError(f"{self.name}: data already read")
        self._read = True
        data = self._walk.read_exact(self.size)
        self._walk.skip(_padding(self.size))
        return data


class TarWalk:
    """Iterate :class:`TarMember` for the regular files of ``stream`` (opened, binary)."""

    def __init__(self, stream: BinaryIO, where: str = "tar"):
        self.stream, self.where = stream, where
        self._seekable = bool(getattr(stream, "seekable", lambda: False)())

    def read_exact(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise TarFormatError(f"{self.where}: truncated tar (wanted {n} bytes, got {len(data)})")
        return data

    def skip(self, n: int) -> None:
        if n <= 0:
            return
        if self._seekable:
            self.stream.seek(n, 1)
            return
        while n > 0:
            n -= len(self.read_exact(min(n, _SKIP_CHUNK)))

    def __iter__(self) -> Iterator[TarMember]:
        pax: dict[bytes, bytes] = {}
        long_name: str | None = None
        first = True
        while True:
            header = self.stream.read(BLOCK)
            if not header or header == bytes(BLOCK):  # end of archive (or an empty stream)
                if first and not header:
                    raise TarFormatError(f"{self.where}: empty file, not a tar")
                return
            if len(header) != BLOCK:
                raise TarFormatError(f"{self.where}: truncated tar header")
            if first and header[:2] == b"\x1f\x8b":
                raise TarFormatError(f"{self.where}: gzip-compressed; shards must be plain .tar")
            first = False
            _check(header, self.where)
            size = _number(header[124:136], self.where)
            kind = header[156:157]
            if kind in (b"x", b"g", b"L"):
                data = self.read_exact(size)
                self.skip(_padding(size))
                if kind == b"x":
                    pax = _pax_records(data, self.where)
                elif kind == b"L":
                    long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue  # 'g' (global pax header) carries nothing we use
            if b"size" in pax:
                size = int(pax[b"size"])
            name = _name(header, pax, long_name)
            pax, long_name = {}, None
            if kind not in _REGULAR:
                self.skip(size + _padding(size))
                continue
            member = TarMember(name, size, self)
            yield member
            if not member._read:
                self.skip(size + _padding(size))


def _padding(size: int) -> int:
    return -size % BLOCK


def _number(field: bytes, where: str) -> int:
    if field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise TarFormatError(f"{where}: not a tar (bad header field {field!r})") from None


def _check(header: bytes, where: str) -> None:
    stored = _number(header[148:156], where)
    # The checksum counts the checksum field itself as 8 spaces (0x20 * 8 = 256).
    actual = sum(header) - sum(header[148:156]) + 256
    if stored != actual:
        raise TarFormatError(f"{where}: not a tar, or corrupt (header checksum mismatch)")


def _name(header: bytes, pax: dict[bytes, bytes], long_name: str | None) -> str:
    if b"path" in pax:
        return pax[b"path"].decode("utf-8", "surrogateescape")
    if long_name is not None:
        return long_name
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax_records(data: bytes, where: str) -> dict[bytes, bytes]:
    """Parse ``"<len> <key>=<value>\\n"`` records."""
    records, i = {}, 0
    while i < len(data) and data[i] != 0:
        space = data.find(b" ", i)
        try:
            length = int(data[i:space])
            key, value = data[space + 1 : i + length - 1].split(b"=", 1)
        except ValueError:
            raise TarFormatError(f"{where}: malformed pax header") from None
        records[key] = value
        i += length
    return records
