"""Outputs the machine refuses (full disk, forbidden folder): an EnvironmentFault naming the
output path, never libsndfile's bare "System error." and never a half-written file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import soundfile as sf

from infer.api import TeluCodec
from telucodec.errors import EnvironmentFault
from tests.infer._inferdata import SR, speech

FORBIDDEN = Path("/sys/telucodec-infer-test")  # sysfs: no file or folder can be made there


@pytest.fixture(scope="module")
def code_file(tiny_export, tmp_path_factory):
    folder = tmp_path_factory.mktemp("codes")
    sf.write(folder / "a.wav", speech(1.2, seed=3), SR)
    tc = TeluCodec.load(tiny_export, "cpu", block_seconds=0.5, batch_windows=1)
    tc.encode_file(folder / "a.wav", folder / "a.tcc")
    return tc, folder / "a.tcc"


def test_decoding_onto_a_full_disk_names_the_output(code_file, tmp_path, monkeypatch):
    tc, tcc = code_file

    def refused(self, data):  # libsndfile's report of a write the disk refused
        raise sf.LibsndfileError(2)

    def full(path):
        st = os.statvfs_result((4096, 4096, 100, 0, 0, 10, 0, 0, 0, 255))
        return st

    monkeypatch.setattr(sf.SoundFile, "write", refused)
    monkeypatch.setattr(os, "statvfs", full)
    out = tmp_path / "out.wav"
    with pytest.raises(EnvironmentFault) as info:
        tc.decode_file(tcc, out)
    assert str(info.value) == (
        f"{out}.part: writing the decoded audio failed: No space left on device"
    )
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no .part left behind


def test_forbidden_output_folder_is_named(code_file, tmp_path):
    tc, tcc = code_file
    if FORBIDDEN.exists():
        pytest.skip("/sys accepts new files here")
    with pytest.raises(EnvironmentFault, match=f"^{FORBIDDEN}/a.wav.part: writing the decoded"):
        tc.decode_file(tcc, FORBIDDEN / "a.wav")
    with pytest.raises(EnvironmentFault, match=f"^{FORBIDDEN}: creating the output folder fa"):
        list(tc.decode_files([tcc], FORBIDDEN))
    with pytest.raises(EnvironmentFault, match=f"^{FORBIDDEN}/b.tcc: writing the code file"):
        tc.encode_file(tcc.with_name("a.wav"), FORBIDDEN / "b.tcc")
