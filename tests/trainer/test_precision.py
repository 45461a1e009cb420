"""Precision where it matters: validation runs the DDP path's generator in fp32 (as the
DeepSpeed path does), the waveform leaves the generator in fp32 under bf16 autocast, and
fp16 with gradient accumulation is refused."""

from __future__ import annotations

import pytest
import torch

from codec.build import build_codec
from trainer.config import ConfigError, load_config
from trainer.engine import build_accelerator, resolve_precision
from trainer.step import build_step_objects


def _dtypes(codec) -> list:
    """Record the dtype of the encoder's output and the last conv's input and output."""
    seen = []
    codec.encoder.register_forward_hook(lambda m, i, o: seen.append(("encoder", o.dtype)))
    last_conv = codec.decoder.model[-2]
    last_conv.register_forward_hook(lambda m, i, o: seen.append(("conv in", i[0].dtype)))
    last_conv.register_forward_hook(lambda m, i, o: seen.append(("conv out", o.dtype)))
    return seen


@pytest.fixture
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state; this test needs its own (bf16)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_ddp_path_validates_in_fp32_and_trains_in_bf16(fresh_accelerator_state):
    cfg = load_config("configs/debug.yaml", ["run.precision=bf16", "wandb.enabled=false"])
    acc = build_accelerator(cfg)
    eng, _ = build_step_objects(acc, cfg)
    assert eng.kind == "ddp"
    seen = _dtypes(eng.codec)
    x = 0.1 * torch.randn(1, 1, cfg.data.segment_samples)
    with torch.no_grad():
        out = eng.codec(x)  # what validation and export run: no autocast of its own
    assert dict(seen) == {"encoder": torch.float32, "conv in": torch.float32,
                          "conv out": torch.float32}  # fmt: skip
    assert out.audio.dtype == torch.float32
    seen.clear()
    with eng.autocast():  # the training step
        out = eng.gen(x)
    assert dict(seen)["encoder"] == torch.bfloat16
    assert dict(seen)["conv out"] == torch.float32
    assert out.audio.dtype == torch.float32


def test_last_conv_and_tanh_run_in_fp32_under_bf16_autocast():
    cfg = load_config("configs/debug.yaml", [])
    codec = build_codec(cfg.codec)
    seen = _dtypes(codec)
    x = 0.1 * torch.randn(2, 1, cfg.data.segment_samples)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = codec(x).audio
    assert y.dtype == torch.float32 and dict(seen)["conv out"] == torch.float32
    # one known gradient: for L = sum(tanh(conv(h))), dL/d(bias) = sum(1 - y^2) in fp32
    y.sum().backward()
    bias = codec.decoder.model[-2].bias
    expected = (1 - y.detach().double() ** 2).sum()
    assert bias.grad.double().item() == pytest.approx(expected.item(), rel=1e-5)


def test_fp16_with_gradient_accumulation_is_refused():
    cfg = load_config("configs/debug.yaml", ["run.precision=fp16", "optim.grad_accum=2"])
    with pytest.raises(ConfigError, match=r"optim.grad_accum.*fp16"):
        resolve_precision(cfg, on_cpu=False)
    cfg = load_config("configs/debug.yaml", ["run.precision=fp16", "optim.grad_accum=1"])
    assert resolve_precision(cfg, on_cpu=False) == "fp16"
    cfg = load_config("configs/debug.yaml", ["run.precision=bf16", "optim.grad_accum=2"])
    assert resolve_precision(cfg, on_cpu=False) == "bf16"
