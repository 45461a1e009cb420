"""The project's error types: a user/environment error is one line and exit 2, anything
else keeps its traceback."""

import errno

import pytest

from telucodec.errors import (
    EnvironmentFault,
    UserInputError,
    environment_fault,
    is_environment_error,
    run_cli,
)


def test_run_cli_turns_project_errors_into_one_line_and_exit_2(capsys):
    def body():
        raise UserInputError("configs/x.yaml: field `optim.lr`: must be > 0")

    assert run_cli("telucodec-train", body) == 2
    err = capsys.readouterr().err
    assert err == "telucodec-train: error: configs/x.yaml: field `optim.lr`: must be > 0\n"


def test_run_cli_lets_other_errors_keep_their_traceback():
    def body():
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        run_cli("telucodec-train", body)


def test_run_cli_exit_codes():
    assert run_cli("p", lambda: None) == 0
    assert run_cli("p", lambda: 3) == 3


def test_environment_fault_names_path_and_reason():
    exc = OSError(errno.ENOSPC, "No space left on device")
    assert is_environment_error(exc)
    assert not is_environment_error(OSError(errno.EIO, "I/O error"))
    assert not is_environment_error(ValueError("x"))
    fault = environment_fault(exc, "/data/out/train-000001.tar", "writing shard")
    assert isinstance(fault, EnvironmentFault)
    assert fault.path == "/data/out/train-000001.tar"
    assert fault.errno == errno.ENOSPC
    assert str(fault) == "/data/out/train-000001.tar: writing shard failed: No space left on device"
