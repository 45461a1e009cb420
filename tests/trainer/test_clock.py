"""The training loop's wall-clock decisions (run.max_minutes, validation.every_minutes):
read every step on one process; on several, only at log steps, where the ranks agree."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from trainer.config import load_config
from trainer.train import _clock


class FakeAcc:
    """Stands in for Accelerator: ``reduce`` sums the given flags with other ranks' flags."""

    def __init__(self, num_processes: int, others: list[float] | None = None):
        self.num_processes, self.device = num_processes, torch.device("cpu")
        self.others = torch.tensor(others or [0.0, 0.0])
        self.reduces = 0

    def reduce(self, t, reduction):
        assert reduction == "sum"
        self.reduces += 1
        return t + self.others


def cfg(**over):
    c = load_config("configs/debug.yaml", [f"{k}={v}" for k, v in over.items()])
    return SimpleNamespace(run=c.run, validation=c.validation)


def test_nothing_to_check_without_time_limits():
    acc = FakeAcc(2)
    assert _clock(acc, cfg(), 10, 0.0, 0.0) == (False, False) and acc.reduces == 0


def test_one_process_reads_the_clock_every_step():
    now = time.time()
    c = cfg(**{"run.max_minutes": 1, "validation.every_minutes": 0.5, "run.log_every": 10})
    assert _clock(FakeAcc(1), c, 3, now - 61, now - 10) == (True, False)
    assert _clock(FakeAcc(1), c, 3, now - 40, now - 31) == (False, True)
    assert _clock(FakeAcc(1), c, 3, now - 10, now - 10) == (False, False)


def test_several_processes_agree_at_log_steps_only():
    now = time.time()
    c = cfg(**{"run.max_minutes": 1, "validation.every_minutes": 0.5, "run.log_every": 10})
    acc = FakeAcc(2, others=[0.0, 1.0])  # another rank's clock says validation is due
    assert _clock(acc, c, 7, now - 120, now - 120) == (False, False) and acc.reduces == 0
    assert _clock(acc, c, 10, now - 5, now - 5) == (False, True) and acc.reduces == 1
    assert _clock(acc, c, 20, now - 61, now - 5) == (True, True)
