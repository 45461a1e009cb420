"""The training-step harness (benchmarks/bench_step.py) and the speed switches it measures:
fused AdamW and torch.compile must train exactly like the default path."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import bench_step
from benchmarks.step_timing import count_step_flops
from tests.trainer._runs import debug_config, logged_steps
from trainer import engine as engine_mod
from trainer.config import load_config
from trainer.engine import build_accelerator, use_fused_adamw
from trainer.step import build_step_objects, gan_step


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state; every test here builds its own."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return bench_step.prepare_shards(None, tmp_path_factory.mktemp("bench"), tiny=True)


def test_tiny_run_reports_every_figure(shards, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = bench_step.main(
        [
            "--preset", "configs/telugu16k.yaml", "--tiny", "--steps", "2", "--warmup", "1",
            "--refs", "dac,encodec", "--ref-python", str(tmp_path / "no-such-python"),
            "--data", str(shards), "--reader-seconds", "0.3", "--json", str(out),
            "data.num_workers=1",
        ]
    )  # fmt: skip
    assert rc == 0
    r = json.loads(out.read_text())
    s = r["step"]
    # --tiny: debug sizes and batch on the production preset's other settings
    assert (r["batch"], r["segment_samples"], r["sample_rate"]) == (2, 3200, 16000)
    assert r["audio_seconds_per_step"] == pytest.approx(2 * 3200 / 16000)
    assert len(s["times_s"]) == 2 and all(t > 0 and math.isfinite(t) for t in s["times_s"])
    assert len(s["warmup_times_s"]) == 1 and r["torch_threads"] >= 1
    assert min(s["times_s"]) <= s["median_s"] <= max(s["times_s"])
    assert s["p10_s"] <= s["median_s"] <= s["p90_s"]
    assert r["audio_seconds_per_second"] == pytest.approx(0.4 / s["median_s"])
    assert r["flops_per_step"] > 0 and r["peak_mem_gib"] > 0
    assert r["achieved_tflops"] == pytest.approx(r["flops_per_step"] / s["median_s"] / 1e12)
    # CPU: MFU against a measured matmul peak, and it says so
    assert "measured" in r["peak_source"] and 0 < r["mfu"] < 1
    assert r["params_generator"] > r["params_discriminator"] > 0
    rd = r["reader"]
    assert rd["workers"] == 1 and rd["batches"] >= 3 * 4  # three prefetch buffers at least
    assert rd["consumed_audio_seconds_per_second"] == pytest.approx(r["audio_seconds_per_second"])
    assert rd["ratio"] == pytest.approx(
        rd["audio_seconds_per_second"] / r["audio_seconds_per_second"]
    )
    assert rd["ratio"] > 0 and rd["meets_5x"] == (rd["ratio"] >= 5)
    # a missing reference interpreter is reported, not fatal
    assert [x["impl"] for x in r["refs"]] == ["dac", "encodec"]
    assert all("not found" in x["error"] for x in r["refs"])
    text = capsys.readouterr().out
    assert "| TeluCodec |" in text and "not run:" in text and "MFU" in text


def test_bad_arguments_are_refused_by_name(tmp_path, capsys):
    assert bench_step.main(["--refs", "opus", "--workdir", str(tmp_path)]) == 2
    assert "--refs" in capsys.readouterr().err
    assert bench_step.main(["--tiny", "--workdir", str(tmp_path), "data.batch_size=0"]) == 2
    assert "data.batch_size" in capsys.readouterr().err


def test_flops_scale_with_batch_and_accumulation():
    """Every counted op (conv, matmul) is per item: FLOPs are linear in batch and in the
    number of micro-batches, and the discriminator's batched real+fake call counts twice."""
    cfg = load_config("configs/debug.yaml", ["data.batch_size=1"])
    one = count_step_flops(cfg, torch.device("cpu"))
    two = count_step_flops(
        load_config("configs/debug.yaml", ["data.batch_size=2"]), torch.device("cpu")
    )
    accum = count_step_flops(
        load_config("configs/debug.yaml", ["data.batch_size=1", "optim.grad_accum=2"]),
        torch.device("cpu"),
    )
    assert one > 0
    assert two == 2 * one and accum == 2 * one


def _two_steps(cfg, batch: torch.Tensor):
    acc = build_accelerator(cfg)
    eng, loss_fn = build_step_objects(acc, cfg)
    losses = []
    for _ in range(2):
        res = gan_step(eng, loss_fn, iter([batch]), 1)
        assert res.applied
        losses += [res.loss_g.item(), res.loss_d.item()]
    return eng, losses


def _batch(cfg) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(cfg.data.batch_size, 1, cfg.data.segment_samples, generator=g)


def test_fused_adamw_trains_like_the_default():
    base = load_config("configs/debug.yaml", ["optim.fused=false"])
    fused = load_config("configs/debug.yaml", ["optim.fused=true"])
    assert use_fused_adamw(load_config("configs/debug.yaml"), "cpu")  # None -> fused on CPU
    assert not use_fused_adamw(base, "cpu")
    x = _batch(base)
    eng_a, loss_a = _two_steps(base, x)
    eng_b, loss_b = _two_steps(fused, x)
    assert eng_b.opt_g.optimizer.defaults["fused"] and not eng_a.opt_g.optimizer.defaults["fused"]
    assert loss_b == pytest.approx(loss_a, rel=1e-5)
    # the weights after two updates agree too (not only the losses, which precede them)
    for p, q in zip(eng_a.codec.parameters(), eng_b.codec.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_compile_traces_the_step_like_eager(monkeypatch, precision):
    """run.compile=true on the debug preset (quantizer dropout 0.5, fp32 STFT islands inside
    bf16 autocast): TorchDynamo + AOTAutograd capture the generator and discriminator and two
    steps give eager's losses. The aot_eager backend runs the captured graphs with eager
    kernels (so the dropout draws match and nothing is code-generated); inductor is the slow
    test below."""
    monkeypatch.setattr(engine_mod, "_compile", lambda m: torch.compile(m, backend="aot_eager"))
    torch._dynamo.reset()
    eager = load_config("configs/debug.yaml", [f'run.precision="{precision}"'])
    x = _batch(eager)
    _, loss_e = _two_steps(eager, x)
    compiled = load_config(
        "configs/debug.yaml", [f'run.precision="{precision}"', "run.compile=true"]
    )
    eng, loss_c = _two_steps(compiled, x)
    assert isinstance(eng.gen, torch._dynamo.eval_frame.OptimizedModule)
    assert not isinstance(eng.codec, torch._dynamo.eval_frame.OptimizedModule)
    assert loss_c == pytest.approx(loss_e, rel=1e-5)
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_training_run_matches_eager(shards, tmp_path):
    """The whole loop with run.compile=true (inductor): two steps log eager's losses,
    validation and checkpoints still see the plain modules (no ``_orig_mod.`` keys).
    Inductor's fallback_random makes the quantizer-dropout draws eager's."""
    from safetensors.torch import load_file

    from trainer.train import train

    torch._dynamo.reset()
    over = ["run.max_steps=2", "validation.max_items=1"]
    eager = train(debug_config(shards, tmp_path / "eager", *over))
    with torch._inductor.config.patch(fallback_random=True):
        comp = train(debug_config(shards, tmp_path / "comp", *over, "run.compile=true"))
    torch._dynamo.reset()
    rows_e, rows_c = logged_steps(eager.run_dir), logged_steps(comp.run_dir)
    assert sorted(rows_c) == [1, 2]
    for step in (1, 2):
        for key in ("loss/mel", "loss/disc", "loss/gen_total"):
            assert rows_c[step][key] == pytest.approx(rows_e[step][key], rel=1e-4), (step, key)
    weights = sorted(comp.checkpoint.glob("model*.safetensors"))
    assert weights
    assert not any("_orig_mod" in k for w in weights for k in load_file(w))


def test_reference_python_may_be_a_path_or_a_name_on_path(tmp_path):
    """A GPU machine runs the references with its own ``python3`` (--ref-python python3)."""
    import shutil

    from benchmarks.step_timing import resolve_python

    assert resolve_python("python3") == shutil.which("python3") is not None
    assert resolve_python(sys.executable) == sys.executable
    assert resolve_python(tmp_path / "no-such-python") is None
