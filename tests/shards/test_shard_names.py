"""Shard names come from a file and, under a ``pipe:`` shard base, reach a shell: only the
names prep writes are accepted, and they are quoted anyway (issue 14, item 1)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shards.manifest import ManifestError, load_manifest
from shards.reader import iter_validation, resolve_shards
from tests.shards._shardfactory import make_shard_set

HOSTILE = "train-000000.tar; touch {marker}"


def _tamper(folder, name: str) -> None:
    path = folder / "manifest.json"
    d = json.loads(path.read_text())
    d["splits"]["train"]["shards"][0]["name"] = name
    path.write_text(json.dumps(d))


@pytest.fixture
def shard_set(tmp_path):
    folder = tmp_path / "set"
    make_shard_set(folder, train=[2], val=[1])
    return folder


def test_a_shell_command_in_a_shard_name_is_refused_and_never_run(shard_set, tmp_path):
    marker = tmp_path / "x"
    _tamper(shard_set, HOSTILE.format(marker=marker))
    base = f"pipe:cat {shard_set}/{{name}}"
    with pytest.raises(ManifestError, match="manifest.json: shard name .*touch") as err:
        resolve_shards(shard_set, "train", base)
    assert str(shard_set / "manifest.json") in str(err.value)
    with pytest.raises(ManifestError):
        list(iter_validation(shard_set, base=base))
    assert not marker.exists()


@pytest.mark.parametrize(
    "name", ["../train-000000.tar", "/etc/passwd", "train-000000.tar\n", "train-1.tar", 7]
)
def test_only_the_names_prep_writes_are_accepted(shard_set, name):
    _tamper(shard_set, name)
    with pytest.raises(ManifestError, match="not one telucodec-prep writes"):
        load_manifest(shard_set)


def test_a_manifest_object_built_in_code_is_checked_too(shard_set, tmp_path):
    manifest = load_manifest(shard_set)
    marker = tmp_path / "y"
    manifest.splits["train"].shards[0].name = HOSTILE.format(marker=marker)
    with pytest.raises(ManifestError, match="shard name"):
        manifest.shard_urls("train", f"pipe:cat {shard_set}/{{name}}")
    assert not marker.exists()


def test_valid_names_still_reach_a_pipe_base(shard_set):
    manifest = load_manifest(shard_set)
    assert manifest.shard_urls("train", "pipe:cat /data/{name}") == [
        "pipe:cat /data/train-000000.tar"
    ]
    base = f"pipe:cat {shard_set}/{{name}}"
    assert [v.key for v in iter_validation(shard_set, base=base)] == ["vals0-c00000"]


def test_audit_cli_refuses_the_manifest_in_one_line(shard_set, tmp_path):
    marker = tmp_path / "z"
    _tamper(shard_set, HOSTILE.format(marker=marker))
    res = subprocess.run(
        [sys.executable, "-m", "shards.audit", str(shard_set), "--base", "pipe:cat {name}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert "manifest.json" in lines[0] and "shard name" in lines[0]
    assert not marker.exists()
