"""Time full GAN training steps of a preset, its data path, and the reference codecs.

One command (issue 7)::

    python -m benchmarks.bench_step --preset configs/telugu16k.yaml [--batch B]
        [--segment-samples T] [--steps N] [--warmup W] [--precision bf16|no|auto]
        [--compile] [--refs dac,encodec|none] [--ref-python PATH] [--data DIR] [--tiny]
        [--json OUT] [key=value config overrides]

What it measures, on whatever device torch sees (CUDA if present, else CPU):

- step: :func:`trainer.step.gan_step` (generator forward, discriminator on real + fake in
  one call, all losses, both backward passes, clipping, the non-finite guard and both AdamW
  steps) on the engine the training loop builds (:func:`trainer.step.build_step_objects`),
  repeated on one fixed batch already on the device (the first batch the reader delivers).
  ``W`` warm-up steps (compilation, cuDNN autotuning, allocator growth), then ``N`` timed
  steps, each bracketed by ``torch.cuda.synchronize``: median, p10, p90. Excluded: the
  loop's log-step reads, validation, checkpoints, dead-code resets.
- peak memory over the timed steps: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the
  process's peak RSS (VmHWM, reset after warm-up where Linux allows it).
- FLOPs of one step with ``torch.utils.flop_counter.FlopCounterMode`` on eager copies of the
  models (same shapes, same code): forward and backward of both models and the losses.
  Only matmul/convolution FLOPs are counted (FFTs, elementwise ops and the optimizer
  updates are not), so MFU is a lower bound of arithmetic use.
- MFU = FLOPs / median step time / peak. GPU peak: dense bf16 tensor-core peak from
  :data:`benchmarks.step_timing.BF16_PEAK_TFLOPS` by device name (whatever ``run.precision`` is: the bar is what the
  hardware can do). CPU: no vendor peak is known, so the peak is *measured*: a 2048^3 matmul
  in the step's compute dtype with the same torch threads (stated in the report).
- data path: :func:`shards.reader.make_train_loader` with the preset's ``num_workers``,
  batch and segment, on shards prepared from ``--data`` (a shard folder, or an audio folder
  that is prepped first) or from generated speech-like audio; audio-seconds per second it
  delivers (steady state, after the first batch) vs what the step consumes; bar >= 5x.
- references: ``<ref-python> benchmarks/refs/{dac,encodec}_step.py`` with the same batch,
  segment, steps, warm-up and device, run after our models are freed; each prints one JSON
  line. Ratios are throughput ours / theirs.
- host syncs (CUDA): one extra step under ``torch.cuda.set_sync_debug_mode("warn")`` lists
  every synchronising call by file:line. ``--no-guard-sync`` times the step without the
  non-finite guard's two reads (a measurement aid only; training always guards).

``--tiny`` swaps in configs/debug.yaml's model, discriminator and loss sizes (and its batch
and segment unless given) so the whole command runs in seconds on a CPU (CI).
``--flops-only`` prints the FLOPs of one step and exits (counting the production preset on
a CPU takes minutes but needs no GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from benchmarks.machine import describe
from benchmarks.step_timing import (
    FLOPS_NOTE,
    REFS,
    ROOT,
    count_step_flops,
    peak_tflops,
    run_reference,
    time_gan_steps,
    time_reader,
)

DEBUG_PRESET = ROOT / "configs" / "debug.yaml"


# ----------------------------------------------------------------------------- config


def build_config(args: argparse.Namespace, shards: str | None = None):
    """The preset, ``--tiny`` sizes, harness settings and ``key=value`` overrides (last wins)."""
    from trainer.config import config_from_dict, merge_trees, parse_overrides

    data = yaml.safe_load(Path(args.preset).read_text()) or {}
    if args.tiny:
        debug = yaml.safe_load(DEBUG_PRESET.read_text())
        for section in ("codec", "discriminator", "loss"):
            data[section] = debug.get(section, {})
        data.setdefault("data", {})
        for key in ("batch_size", "segment_samples"):
            data["data"][key] = debug["data"][key]
    over = ["wandb.enabled=false", "run.name=bench_step", f"run.output_dir={args.workdir}"]
    if args.batch is not None:
        over.append(f"data.batch_size={args.batch}")
    if args.segment_samples is not None:
        over.append(f"data.segment_samples={args.segment_samples}")
    if args.precision is not None:
        over.append(f'run.precision="{args.precision}"')  # quoted: YAML reads bare no as False
    if args.compile:
        over.append("run.compile=true")
    if shards is not None:
        over.append(f"data.shards={shards}")
    return config_from_dict(merge_trees(data, parse_overrides(over + list(args.overrides))))


# ----------------------------------------------------------------------------- data


def prepare_shards(
    data: Path | None, workdir: Path, tiny: bool, group_regex: str | None = None
) -> Path:
    """A shard folder: ``data`` itself if it holds a manifest, else ``data`` (an audio
    folder) prepped into ``workdir/shards`` (validation files 10%, whole groups when
    ``group_regex`` names a speaker field in the file names), else generated speech-like
    audio prepped."""
    from shards import synth
    from shards.prep import PrepConfig, prep_corpus
    from shards.split import SplitConfig

    if data is not None and (data / "manifest.json").is_file():
        return data
    out = workdir / "shards"
    if data is not None:
        if not data.is_dir():
            raise FileNotFoundError(f"--data {data}: not a folder")
        split = SplitConfig(mode="file", val_fraction=0.1, group_regex=group_regex)
        cfg = PrepConfig(split=split, overwrite=True)
        prep_corpus(data, out, cfg, progress=False)
        return out
    corpus = workdir / "corpus"
    files, seconds = (3, 12.0) if tiny else (6, 60.0)
    for i in range(files):  # 10 s chunks as prep makes them, at four levels
        synth.write(
            corpus / f"SPKF0{i}_rec.wav",
            synth.speech_like(seconds, 16_000, seed=i, peak=0.2 + 0.1 * (i % 4)),
            16_000,
            "PCM_16",
        )
    cfg = PrepConfig(
        chunk_seconds=4.0 if tiny else 10.0,
        workers=1,
        overwrite=True,
        split=SplitConfig(mode="time", val_seconds=2.0, gap_seconds=0.0),
    )
    prep_corpus(corpus, out, cfg, progress=False)
    return out


# ----------------------------------------------------------------------------- report


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _fmt_params(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} M"


def format_markdown(r: dict) -> str:
    """The report as Markdown (the table BENCHMARKS.md keeps)."""
    s = r["step"]
    first = s["warmup_times_s"][0] if s["warmup_times_s"] else float("nan")
    lines = [
        f"### Training step: {r['preset']}{' (--tiny)' if r['tiny'] else ''}, {r['device']}",
        f"- command: `{r['command']}`",
        f"- machine: {r['machine']}; load average {r['load_average']}; date {r['date']}",
        f"- batch {r['batch']} x {r['segment_samples']} samples x accum {r['grad_accum']} = "
        f"{r['audio_seconds_per_step']:g} s of audio per step; precision {r['precision']}; "
        f"compile {r['compile']}; fused AdamW {r['fused_adamw']}; cudnn.benchmark "
        f"{'n/a' if r['cudnn_benchmark'] is None else r['cudnn_benchmark']}; "
        f"{r['torch_threads']} torch threads; {s['warmup']} warm-up + {s['steps']} timed "
        f"steps (first warm-up step {first:.2f} s)",
        "",
        "| impl | params G / D | precision | step time median (p10-p90) | audio-s/s | peak mem"
        " | ours vs this |",
        "|---|---|---|---|---|---|---|",
        f"| TeluCodec | {_fmt_params(r['params_generator'])} / "
        f"{_fmt_params(r['params_discriminator'])} | {r['precision']} | {s['median_s']:.4f} s "
        f"({s['p10_s']:.4f}-{s['p90_s']:.4f}) | {r['audio_seconds_per_second']:.2f} | "
        f"{_fmt_mem(r['peak_mem_gib'])} | 1.00x |",
    ]
    for ref in r["refs"]:
        if "error" in ref:
            lines.append(f"| {ref['impl']} | - | - | not run: {ref['error']} | - | - | - |")
            continue
        mem = ref.get("peak_mem_gib", ref.get("peak_rss_gib"))
        lines.append(
            f"| {ref['impl']} {ref.get('version', '')} | "
            f"{_fmt_params(ref.get('params_generator'))} / "
            f"{_fmt_params(ref.get('params_discriminator'))} | {ref.get('precision', '?')} | "
            f"{ref['step_time_s_median']:.4f} s | {ref['audio_seconds_per_second']:.2f} | "
            f"{_fmt_mem(mem)} | **{ref['ratio_ours_vs_ref']:.2f}x** |"
        )
    rd = r["reader"]
    lines += [
        "",
        f"- FLOPs per step: {r['flops_per_step'] / 1e12:.4f} TFLOP ({FLOPS_NOTE}); achieved "
        f"{r['achieved_tflops']:.3f} TFLOP/s; MFU "
        + (f"**{100 * r['mfu']:.2f}%**" if r["mfu"] is not None else "not reported")
        + f" (peak: {r['peak_source']})",
        f"- peak memory: {_fmt_mem(r['peak_mem_gib'])} ({r['peak_mem_kind']}); steps skipped by "
        f"the non-finite guard: {s['skipped']}",
        f"- reader: {rd['workers']} worker(s) deliver {rd['audio_seconds_per_second']:.0f} "
        f"audio-s/s vs {rd['consumed_audio_seconds_per_second']:.1f} consumed by the step = "
        f"**{rd['ratio']:.1f}x** ({'meets' if rd['ratio'] >= 5 else 'misses'} the 5x bar; "
        f"{rd['batches']} batches in {rd['seconds']:.2f} s)",
    ]
    if s.get("sync_warnings") is not None:
        lines.append(
            f"- host syncs in one step (CUDA sync debug mode): {len(s['sync_warnings'])}"
            + "".join(f"\n  - `{w}`" for w in sorted(set(s["sync_warnings"])))
        )
    if r.get("compile_stats"):
        lines.append(f"- torch.compile: {r['compile_stats']}")
    return "\n".join(lines)


def _fmt_mem(gib: float | None) -> str:
    return "?" if gib is None else f"{gib:.2f} GiB"


def _compile_stats() -> dict:
    from torch._dynamo.utils import counters

    breaks = {k.splitlines()[0]: v for k, v in counters["graph_break"].items()}
    return {"unique_graphs": counters["stats"].get("unique_graphs", 0), "graph_breaks": breaks}


# ----------------------------------------------------------------------------- main


def bench_step(args: argparse.Namespace) -> dict:
    """Run the whole benchmark per ``args`` (see :func:`build_parser`); the report dict."""
    from trainer.engine import build_accelerator, resolve_precision, use_fused_adamw
    from trainer.step import build_step_objects

    args.workdir.mkdir(parents=True, exist_ok=True)
    cfg = build_config(args)
    device = torch.device("cuda" if torch.cuda.is_available() and not cfg.run.cpu else "cpu")
    if args.flops_only:
        return {
            "flops_per_step": count_step_flops(cfg, device),
            "note": FLOPS_NOTE,
            "batch": cfg.data.batch_size,
            "segment_samples": cfg.data.segment_samples,
        }

    shards = prepare_shards(args.data, args.workdir, args.tiny)
    cfg = build_config(args, str(shards))
    sr, b, accum = cfg.codec.sample_rate, cfg.data, cfg.optim.grad_accum
    first, reader = time_reader(cfg, device.type == "cuda", args.reader_seconds)

    acc = build_accelerator(cfg)
    device = acc.device
    precision = resolve_precision(cfg, device.type != "cuda")
    batch = first.to(device)
    flops = count_step_flops(cfg, device, batch)
    eng, loss_fn = build_step_objects(acc, cfg)
    if args.no_guard_sync:
        # timing aid: step without reading the gradient norm (the guard's host sync)
        eng._guarded_step = lambda opt, gnorm: (opt.step(), True)[1]
    timing = time_gan_steps(
        eng, loss_fn, batch, accum, args.steps, args.warmup, sync_debug=device.type == "cuda"
    )
    params_g, params_d = _params(eng.codec), _params(eng.discriminator)
    del eng, loss_fn, batch  # the references get the device to themselves
    if device.type == "cuda":
        torch.cuda.empty_cache()

    audio_per_step = b.batch_size * accum * b.segment_samples / sr
    ours = audio_per_step / timing.median
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak, source = peak_tflops(device, dtype)
    achieved = flops / timing.median / 1e12
    refs = []
    for name in args.ref_names:
        ref = run_reference(
            name,
            args.ref_python,
            b.batch_size,
            b.segment_samples,
            args.steps,
            args.warmup,
            device.type,
            args.tiny,
            args.ref_timeout,
        )
        if "error" not in ref:
            ref["ratio_ours_vs_ref"] = ours / ref["audio_seconds_per_second"]
        refs.append(ref)
    consumed = ours
    return {
        "command": "python -m benchmarks.bench_step " + shlex.join(args.argv),
        "machine": describe(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": f"{dt.datetime.now():%Y-%m-%d %H:%M}",
        "torch": torch.__version__,
        "preset": Path(args.preset).stem,
        "tiny": args.tiny,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": b.batch_size,
        "segment_samples": b.segment_samples,
        "grad_accum": accum,
        "sample_rate": sr,
        "audio_seconds_per_step": audio_per_step,
        "precision": precision,
        "compile": cfg.run.compile,
        "fused_adamw": use_fused_adamw(cfg, device.type),
        "cudnn_benchmark": cfg.run.cudnn_benchmark if device.type == "cuda" else None,
        "guard_sync": not args.no_guard_sync,
        "torch_threads": torch.get_num_threads(),
        "params_generator": params_g,
        "params_discriminator": params_d,
        "step": {
            "steps": args.steps,
            "warmup": args.warmup,
            "median_s": timing.median,
            "p10_s": timing.quantile(0.1),
            "p90_s": timing.quantile(0.9),
            "times_s": timing.times,
            "warmup_times_s": timing.warmup_times,
            "skipped": timing.skipped,
            "sync_warnings": timing.sync_warnings,
        },
        "audio_seconds_per_second": ours,
        "peak_mem_gib": timing.peak_mem_gib,
        "peak_mem_kind": timing.peak_mem_kind,
        "flops_per_step": flops,
        "flops_note": FLOPS_NOTE,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "peak_source": source,
        "mfu": None if peak is None else achieved / peak,
        "reader": {
            "workers": reader.workers,
            "batches": reader.batches,
            "seconds": reader.seconds,
            "audio_seconds_per_second": reader.audio_seconds_per_second,
            "consumed_audio_seconds_per_second": consumed,
            "ratio": reader.audio_seconds_per_second / consumed,
            "meets_5x": reader.audio_seconds_per_second >= 5 * consumed,
        },
        "refs": refs,
        "compile_stats": _compile_stats() if cfg.run.compile else None,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_step", description=__doc__.split("\n")[0]
    )
    p.add_argument("--preset", default="configs/telugu16k.yaml")
    p.add_argument("--batch", type=int, default=None, help="per-process batch (default: preset)")
    p.add_argument("--segment-samples", type=int, default=None, help="crop length in samples")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--precision", choices=("bf16", "no", "auto", "fp16"), default=None)
    p.add_argument("--compile", action="store_true", help="run.compile=true")
    p.add_argument("--refs", default="dac,encodec", help="comma list of dac, encodec, or none")
    p.add_argument("--ref-python", default=str(ROOT / ".venv-ref" / "bin" / "python"))
    p.add_argument("--ref-timeout", type=float, default=1800.0, help="seconds per reference")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="shard folder (with manifest.json) or audio folder to prep",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where generated audio and shards go (default: a temporary folder)",
    )
    p.add_argument("--reader-seconds", type=float, default=5.0, help="reader timing length")
    p.add_argument("--tiny", action="store_true", help="debug-preset model sizes (CI)")
    p.add_argument(
        "--no-guard-sync",
        action="store_true",
        help="timing aid: skip the non-finite guard's host reads (never for training)",
    )
    p.add_argument("--flops-only", action="store_true", help="print FLOPs of one step and exit")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    args.ref_names = [n for n in args.refs.split(",") if n and n != "none"]
    bad = [n for n in args.ref_names if n not in REFS]
    if args.steps < 1 or args.warmup < 0 or bad:
        print(
            f"bench_step: need --steps >= 1, --warmup >= 0 and --refs from {sorted(REFS)} or "
            f"none (got {args.steps}, {args.warmup}, {args.refs!r})",
            file=sys.stderr,
        )
        return 2
    from trainer.config import ConfigError

    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            args.workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            report = bench_step(args)
        except (ConfigError, FileNotFoundError) as e:
            print(f"bench_step: {e}", file=sys.stderr)
            return 2
    if args.flops_only:
        print(json.dumps(report))
        return 0
    print(format_markdown(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
