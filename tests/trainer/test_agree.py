"""The training loop's step-boundary decisions (run.max_minutes, validation.every_minutes,
stop requests): read every step on one process; on several, every run.agree_every steps,
where the ranks agree and a flag raised on any rank holds for all."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from trainer.config import load_config
from trainer.stopping import agree as _agree


class FakeAcc:
    """Stands in for Accelerator: ``reduce`` sums the given flags with other ranks' flags."""

    def __init__(self, num_processes: int, others: list[float] | None = None):
        self.num_processes, self.device = num_processes, torch.device("cpu")
        self.others = torch.tensor(others or [0.0, 0.0, 0.0])
        self.reduces = 0

    def reduce(self, t, reduction):
        assert reduction == "sum"
        self.reduces += 1
        return t + self.others


class Asked:
    """Stands in for StopRequest: this rank's request (or None); counts the lookups."""

    def __init__(self, reason: str | None = None):
        self.value, self.lookups = reason, 0

    def reason(self):
        self.lookups += 1
        return self.value


NO = Asked()


def cfg(**over):
    c = load_config("configs/debug.yaml", [f"{k}={v}" for k, v in over.items()])
    return SimpleNamespace(run=c.run, validation=c.validation)


def test_one_process_decides_every_step_without_a_collective():
    now = time.time()
    c = cfg(**{"run.max_minutes": 1, "validation.every_minutes": 0.5, "run.agree_every": 10})
    acc = FakeAcc(1)
    assert _agree(acc, c, 3, now - 61, now - 10, NO) == (True, False, None)
    assert _agree(acc, c, 3, now - 40, now - 31, NO) == (False, True, None)
    assert _agree(acc, c, 3, now - 10, now - 10, NO) == (False, False, None)
    sig = Asked("signal SIGTERM")
    assert _agree(acc, c, 3, now - 10, now - 10, sig) == (False, False, "signal SIGTERM")
    assert acc.reduces == 0


def test_without_time_limits_stop_requests_are_still_agreed():
    acc = FakeAcc(2, others=[0.0, 0.0, 1.0])  # another rank was signalled
    c = cfg(**{"run.agree_every": 5})
    here = Asked()
    assert _agree(acc, c, 4, 0.0, 0.0, here) == (False, False, None)
    assert acc.reduces == 0 and here.lookups == 0  # no stop-file lookup between agreements
    assert _agree(acc, c, 5, 0.0, 0.0, here) == (False, False, "on another rank")
    assert acc.reduces == 1 and here.lookups == 1
    assert _agree(acc, c, 10, 0.0, 0.0, Asked("stop file S")) == (False, False, "stop file S")


def test_several_processes_agree_every_agree_every_steps_only():
    now = time.time()
    c = cfg(**{"run.max_minutes": 1, "validation.every_minutes": 0.5, "run.agree_every": 10})
    acc = FakeAcc(2, others=[0.0, 1.0, 0.0])  # another rank's clock says validation is due
    sig = Asked("signal SIGUSR1")
    assert _agree(acc, c, 7, now - 120, now - 120, sig) == (False, False, None)
    assert acc.reduces == 0
    assert _agree(acc, c, 10, now - 5, now - 5, NO) == (False, True, None)
    assert acc.reduces == 1
    assert _agree(acc, c, 20, now - 61, now - 5, sig) == (True, True, "signal SIGUSR1")
