"""Fixtures for the inference tests: a tiny codec and its export, one intra-op thread."""

from __future__ import annotations

import pytest
import torch

from codec.build import build_codec
from codec.config import CodecConfig
from codec.export_format import export_state_dict
from infer.fast import strip_weight_norm
from tests.infer._inferdata import TINY


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """An export of a freshly built tiny codec (untrained: only formats, levels and
    block arithmetic are tested with it, never quality)."""
    torch.manual_seed(0)
    cfg = CodecConfig(**TINY)
    out = tmp_path_factory.mktemp("export")
    export_state_dict(build_codec(cfg).state_dict(), cfg, -26.0, -1.0, out)
    return out


@pytest.fixture(scope="module")
def codec():
    """The same tiny codec, built in memory as inference runs it (eval, weight norm folded)."""
    torch.manual_seed(0)
    c = build_codec(CodecConfig(**TINY)).eval()
    strip_weight_norm(c)
    return c


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny models, and predictable timing on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
