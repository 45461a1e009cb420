"""The lean tar walker reads what tarfile writes, in every format, and refuses bad input."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from shards.tarwalk import TarFormatError, TarWalk

LONG_NAMES = {
    "a/short.flac": b"x" * 1000,
    "b" * 150 + "/deep/" + "c" * 120 + ".json": b'{"k": 1}',
    "empty.txt": b"",
    "exact.bin": bytes(range(256)) * 2,  # exactly one block: no padding
    "unicode-\u0c24\u0c46.json": b"{}",  # Telugu letters in the name
}
# ustar cannot store names over 255 bytes or non-ASCII ones; it splits prefix/name instead.
USTAR_NAMES = {"a/x.flac": b"12345", "p" * 90 + "/" + "q" * 90 + ".json": b"{}"}


def build_tar(fmt: int, files: dict[str, bytes]) -> bytes:
    """A tar of ``files`` plus a directory and a symlink (which the walk skips)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        d = tarfile.TarInfo("a")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("a/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "short.flac"
        tar.addfile(link)
    return buf.getvalue()


class NoSeek(io.RawIOBase):
    """A pipe-like stream: reads only."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("seekable", [True, False])
def test_walk_matches_what_tarfile_wrote(fmt, seekable):
    files = USTAR_NAMES if fmt == tarfile.USTAR_FORMAT else LONG_NAMES
    data = build_tar(fmt, files)
    stream = io.BytesIO(data) if seekable else NoSeek(data)
    got = {}
    for i, member in enumerate(TarWalk(stream, "t.tar")):
        if i % 2 == 0:  # read every other member; the walk must skip the rest correctly
            got[member.name] = member.read()
        else:
            got[member.name] = files[member.name]
    assert got == files


def test_bad_streams_are_refused():
    data = build_tar(tarfile.PAX_FORMAT, LONG_NAMES)
    with pytest.raises(TarFormatError, match="truncated"):
        list(m.read() for m in TarWalk(io.BytesIO(data[:1500]), "t.tar"))
    corrupt = bytearray(data)
    corrupt[10] ^= 0xFF
    with pytest.raises(TarFormatError, match="checksum"):
        list(TarWalk(io.BytesIO(bytes(corrupt)), "t.tar"))
    with pytest.raises(TarFormatError, match="gzip"):
        list(TarWalk(io.BytesIO(gzip.compress(data)), "t.tar.gz"))
    with pytest.raises(TarFormatError, match="empty"):
        list(TarWalk(io.BytesIO(b""), "t.tar"))
    with pytest.raises(TarFormatError, match="not a tar"):
        list(TarWalk(io.BytesIO(b"RIFF" + bytes(600)), "t.tar"))


def test_sizes_in_gnu_base256_are_read():
    from shards.tarwalk import _number

    assert _number(b"\x80" + (9 << 30).to_bytes(11, "big"), "t") == 9 << 30
    assert _number(b"00000001750\0", "t") == 0o1750
