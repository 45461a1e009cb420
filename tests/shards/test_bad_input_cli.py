"""The shard commands on bad input: one line naming the file, exit 2, no traceback
(issue 14, item 13)."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import tarfile

from tests.shards._shardfactory import make_shard_set


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=120
    )


def _one_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def _corrupt_member(tar_path, key_suffix: str = ".flac") -> str:
    """Overwrite the middle of the first FLAC member's audio frames with garbage, keeping
    the tar valid; returns the member's key."""
    with tarfile.open(tar_path) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(key_suffix))
    data = bytearray(tar_path.read_bytes())
    start = member.offset_data
    data[start : start + member.size] = b"\xff" * 8 + bytes(member.size - 8)
    tar_path.write_bytes(bytes(data))
    return member.name.split(".")[0]


def test_audit_of_a_corrupt_flac_names_shard_and_sample(tmp_path):
    folder = tmp_path / "set"
    make_shard_set(folder, train=[3], val=[1])
    key = _corrupt_member(folder / "train-000000.tar")
    line = _one_line(_run("shards.audit", str(folder)))
    assert line.startswith("telucodec-audit: error: ")
    assert "train-000000.tar" in line and key in line


def test_audit_of_a_missing_or_garbage_manifest(tmp_path):
    line = _one_line(_run("shards.audit", str(tmp_path)))
    assert "no manifest" in line and str(tmp_path) in line
    (tmp_path / "manifest.json").write_bytes(b"\x00\x01garbage")
    line = _one_line(_run("shards.audit", str(tmp_path)))
    assert "manifest.json" in line and "malformed" in line


def test_audit_to_a_read_only_folder_names_the_path(tmp_path, monkeypatch, capsys):
    from shards import audit

    folder = tmp_path / "set"
    make_shard_set(folder, train=[1], val=[1])
    out = tmp_path / "ro" / "audit.json"

    def read_only(self, *a, **k):  # what a read-only mount answers (tests may run as root)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(audit.Path, "write_text", read_only)
    assert audit.main([str(folder), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"telucodec-audit: error: {out}: writing the audit output failed: "
                   "Read-only file system"]  # fmt: skip


def test_tar_format_errors_are_user_errors():
    from shards.tarwalk import TarFormatError, TarWalk
    from telucodec.errors import UserInputError

    try:
        list(TarWalk(io.BytesIO(b"x" * 1000), "bad.tar"))
    except TarFormatError as e:
        assert isinstance(e, UserInputError) and "bad.tar" in str(e)
    else:
        raise AssertionError("a garbage tar was accepted")


def test_prep_names_a_bad_setting(tmp_path, capsys):
    from shards import cli

    assert cli.main([str(tmp_path), "--out", str(tmp_path / "o"), "--val-fraction", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("telucodec-prep: error: ") and "val_fraction" in err[0]
    )
    assert not (tmp_path / "o").exists()
