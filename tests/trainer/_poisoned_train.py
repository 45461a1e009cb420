"""``trainer.train`` with NaN in chosen micro-batches of one rank, for launching under
``accelerate launch`` (where a test cannot monkeypatch): a data bug on one rank only.

Environment: ``POISON_RANK`` (int) and ``POISON_BATCHES`` (comma-separated 1-based batch
indices of that rank's stream); the arguments are those of ``trainer.train``.
"""

from __future__ import annotations

import math
import os
import sys

import torch

import trainer.batches as tb
import trainer.train as tt

RANK = int(os.environ["POISON_RANK"])
BAD = {int(i) for i in os.environ["POISON_BATCHES"].split(",")}
_real = tb.make_train_loader


class _Poisoned:
    def __init__(self, loader, rank: int):
        self.loader, self.rank = loader, rank

    def __iter__(self):
        for i, batch in enumerate(self.loader, start=1):
            if self.rank == RANK and i in BAD:
                batch = dict(batch, audio=torch.full_like(batch["audio"], math.nan))
            yield batch


def _make(*args, **kwargs):
    return _Poisoned(_real(*args, **kwargs), kwargs["rank"])


if __name__ == "__main__":
    tb.make_train_loader = _make
    sys.exit(tt.main(sys.argv[1:]))
