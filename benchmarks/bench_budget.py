"""Quality at a fixed wall-clock budget: our preset vs DAC's 16 kHz recipe, same data.

One command (issue 7, "quality at a fixed budget")::

    python -m benchmarks.bench_budget --preset configs/telugu16k.yaml --minutes 10 \
        --val-every-minutes 1 --data ../shared/data/telugu-emotion [--systems ours,dac]

What it does:

1. shards: ``--data`` as a shard folder (with manifest.json), or an audio folder prepped
   with the default settings and speakers held out by ``--group-regex`` (the Telugu clips'
   ``SPK..`` field), or generated speech-like audio (``--data`` omitted; for CI);
2. exports the training chunks and the validation chunks (the same bounded, ordered set our
   validation hook reads: ``--val-items``, ``--val-seconds``) to ``train.npz`` / ``val.npz``
   for the reference, which runs in its own venv and cannot read our shards;
3. ours: :func:`trainer.train.train` on the preset (bf16 on a GPU, fp32 STFT/mel, its own
   reader and loop, exactly as a user runs it) with ``run.max_minutes`` = the budget and
   ``validation.every_minutes`` = the validation interval, at the operating point only;
4. DAC: ``<ref-python> benchmarks/refs/dac_train.py`` (DAC's model, losses, optimizers and
   step, fp32 as its recipe), same batch, segment, budget, interval and codebook count; its
   decoded validation audio is scored here with the same :mod:`codec.metrics` functions as our
   validation hook, so both curves use one definition of mel distance;
5. writes ``budget_<system>.json`` per system into ``--workdir`` and, from whichever are
   there, ``budget.md`` (both curves, the verdict) and ``budget.png`` (mel distance vs
   minutes). ``--systems`` runs one side at a time (e.g. in two GPU calls of 10 minutes);
   ``--report-only`` rebuilds the report from the JSON files.

Validation time counts against the budget on both sides (each validates at the same
interval on the same chunks); the final validation after the last step does not.
The verdict compares the last validation of each run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe
from benchmarks.step_timing import ROOT, resolve_python

DAC_TRAIN = ROOT / "benchmarks" / "refs" / "dac_train.py"
SYSTEMS = ("ours", "dac")
TELUGU_SPEAKER = r"SPK[FM]\d+"


# ----------------------------------------------------------------------------- data


def export_chunks(shards: Path, out: Path, val_items: int, val_seconds: float) -> dict:
    """``train.npz`` (every training chunk) and ``val.npz`` (the validation hook's bounded
    set) as ``audio`` (float32, end to end) + ``bounds`` (int64 [n, 2]: start, length)."""
    from shards.reader import iter_chunks, iter_validation

    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, items in (
        ("train", iter_chunks(shards, "train")),
        ("val", iter_validation(shards, max_items=val_items, max_seconds=val_seconds)),
    ):
        pieces = [item.audio.reshape(-1).numpy() for item in items]
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        np.savez(
            out / f"{name}.npz",
            audio=np.concatenate(pieces).astype(np.float32),
            bounds=np.stack([starts, lengths], axis=1),
        )
        sizes[name] = {"chunks": len(pieces), "samples": int(lengths.sum())}
    return sizes


def load_val(path: Path) -> list[torch.Tensor]:
    with np.load(path) as z:
        audio, bounds = z["audio"], z["bounds"]
    return [torch.from_numpy(audio[s : s + n].copy()) for s, n in bounds]


def score(val: list[torch.Tensor], outs: list[np.ndarray], sample_rate: int) -> dict:
    """Mean over chunks of the validation hook's metrics (:mod:`codec.metrics`), each chunk
    compared over the span both have (DAC's 16 kHz model returns up to 8 samples short)."""
    from codec import metrics

    if len(outs) != len(val):
        raise ValueError(f"{len(outs)} decoded chunks for {len(val)} validation chunks")
    acc = {"mel_distance": 0.0, "snr_db": 0.0, "rms_ratio": 0.0}
    for x, y in zip(val, outs, strict=True):
        n = min(len(x), len(y))
        xs, ys = x[:n].view(1, 1, -1), torch.from_numpy(y[:n]).view(1, 1, -1)
        acc["mel_distance"] += metrics.mel_distance(xs, ys, sample_rate).item()
        acc["snr_db"] += metrics.snr_db(xs, ys).item()
        acc["rms_ratio"] += metrics.rms_ratio(xs, ys).item()
    return {k: v / len(val) for k, v in acc.items()}


# ----------------------------------------------------------------------------- systems


def run_ours(args, shards: Path, device: str) -> dict:
    """The preset trained by our trainer for the budget; its validation curve."""
    from benchmarks.bench_step import build_config
    from codec.build import build_codec, count_parameters
    from trainer.engine import resolve_precision
    from trainer.train import train

    run_root = args.workdir / "ours"
    shutil.rmtree(run_root, ignore_errors=True)
    probe = _probe(args)
    kbps = probe.codec.bitrate_kbps(probe.codec.operating_n_quantizers)
    over = [
        "run.name=budget",
        f"run.max_minutes={args.minutes}",
        "run.max_steps=1000000000",
        f"validation.every_minutes={args.val_every_minutes}",
        "validation.every_steps=1000000000",
        f"validation.kbps=[{kbps}]",
        f"validation.max_items={args.val_items}",
        f"validation.max_seconds={args.val_seconds}",
        "checkpoint.every_steps=1000000000",
        # step time is read per log window, and a window holding a validation is slower:
        # short windows keep the median a step's time (DAC's is timed step by step)
        "run.log_every=10",
        *(["run.cpu=true"] if device == "cpu" else []),
        *args.overrides,
    ]
    cfg = build_config(_step_args(args, run_root, over), shards=str(shards))
    precision = resolve_precision(cfg, device != "cuda")
    res = train(cfg)
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    tag = f"val/{kbps:g}kbps"
    curve = [
        {
            "step": r["step"],
            "session_wall_s": r["val/session_wall_s"],
            "mel_distance": r[f"{tag}/mel_distance"],
            "snr_db": r[f"{tag}/snr_db"],
            "rms_ratio": r[f"{tag}/rms_ratio"],
        }
        for r in rows
        if "val/session_wall_s" in r
    ]
    steps = [r["perf/step_time_s"] for r in rows if "perf/step_time_s" in r]
    return {
        "system": "ours",
        "preset": Path(args.preset).stem,
        "params_generator": count_parameters(build_codec(cfg.codec)),
        "precision": "fp32" if precision == "no" else precision,
        "n_quantizers": cfg.codec.operating_n_quantizers,
        "kbps": kbps,
        "steps": res.steps,
        "stop_reason": res.stop_reason,
        "step_time_s_median": float(np.median(steps[1:] or steps)) if steps else None,
        "curve": curve,
    }


def run_dac(args, arrays: Path, device: str) -> dict:
    """DAC's recipe in the reference venv for the budget; its outputs scored here."""
    python = resolve_python(args.ref_python)
    if python is None:
        raise FileNotFoundError(
            f"reference python {args.ref_python} not found (make refs, or --ref-python)"
        )
    out = args.workdir / "dac"
    shutil.rmtree(out, ignore_errors=True)
    probe = _probe(args)
    cmd = [
        python,
        str(DAC_TRAIN),
        "--data",
        str(arrays),
        "--out",
        str(out),
        "--minutes",
        str(args.minutes),
        "--val-every-minutes",
        str(args.val_every_minutes),
        "--n-quantizers",
        str(probe.codec.operating_n_quantizers),
        "--batch",
        str(probe.data.batch_size),
        "--segment-samples",
        str(probe.data.segment_samples),
        "--device",
        device,
        *(["--tiny"] if args.tiny else []),
    ]
    # the budget plus start-up, validations and the final one; a hung child is an error
    limit = args.minutes * 60 * 2 + 600
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"{DAC_TRAIN.name} exited {proc.returncode}: {tail}")
    rec = json.loads(lines[-1])
    val = load_val(arrays / "val.npz")
    curve = []
    for v in rec.pop("validations"):
        with np.load(out / v["file"]) as z:
            outs = [z[f"arr_{i}"] for i in range(len(z.files))]
        curve.append(
            {
                "step": v["step"],
                "session_wall_s": v["session_wall_s"],
                **score(val, outs, probe.codec.sample_rate),
            }
        )
        (out / v["file"]).unlink()  # decoded audio: scored, not kept
    return {"system": "dac", **rec, "curve": curve}


def _probe(args):
    """The config ours will train with (before the budget overrides): batch, segment, rate
    and operating point, which DAC's run copies."""
    from benchmarks.bench_step import build_config

    return build_config(_step_args(args, args.workdir))


def _step_args(args, workdir: Path, overrides: list[str] | None = None) -> argparse.Namespace:
    """The namespace :func:`benchmarks.bench_step.build_config` reads (one config recipe for
    both benchmarks: preset, ``--tiny`` sizes, batch and segment)."""
    return argparse.Namespace(
        preset=args.preset,
        tiny=args.tiny,
        batch=args.batch,
        segment_samples=args.segment_samples,
        precision=None,
        compile=False,
        workdir=workdir,
        overrides=overrides if overrides is not None else list(args.overrides),
    )


# ----------------------------------------------------------------------------- report


def report(workdir: Path) -> str:
    """Markdown for the systems whose ``budget_<system>.json`` is in ``workdir``, and
    ``budget.png`` beside it."""
    runs = {}
    for name in SYSTEMS:
        path = workdir / f"budget_{name}.json"
        if path.is_file():
            runs[name] = json.loads(path.read_text())
    if not runs:
        raise FileNotFoundError(f"{workdir}: no budget_<system>.json to report")
    first = next(iter(runs.values()))
    lines = [
        f"Budget {first['minutes']:g} min per system, validation every "
        f"{first['val_every_minutes']:g} min on {first['val_chunks']} held-out chunks "
        f"({first['val_seconds_audio']:.1f} s), batch {first['batch']} x "
        f"{first['segment_samples']} samples, data {first['data']}",
        f"Machine: {first['machine']}; device {first['device']}",
        "",
        "| system | generator params | precision | kbps | steps | median step s | "
        "final mel dist | final SNR dB | final RMS ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        last, med = r["curve"][-1], r.get("step_time_s_median")
        lines.append(
            f"| {name} | {r['params_generator'] / 1e6:.2f} M | {r['precision']} | {r['kbps']:g} | "
            f"{r['steps']} | {'-' if med is None else f'{med:.3f}'} | "
            f"{last['mel_distance']:.3f} | {last['snr_db']:.2f} | {last['rms_ratio']:.3f} |"
        )
    lines += [
        "",
        "| system | min | step | mel dist | SNR dB | RMS ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        for p in r["curve"]:
            lines.append(
                f"| {name} | {p['session_wall_s'] / 60:.2f} | {p['step']} | "
                f"{p['mel_distance']:.3f} | {p['snr_db']:.2f} | {p['rms_ratio']:.3f} |"
            )
    if set(runs) == set(SYSTEMS):
        ours, dac = (runs[n]["curve"][-1]["mel_distance"] for n in SYSTEMS)
        best = {n: min(p["mel_distance"] for p in runs[n]["curve"]) for n in SYSTEMS}
        verdict = "met" if ours < dac else "not met"
        # the margin and the best points say whether "met" is more than validation noise
        lines += [
            "",
            f"Bar (lower validation mel distance than DAC's recipe at the same budget): "
            f"**{verdict}** at the end of the budget (ours {ours:.3f}, DAC {dac:.3f}, "
            f"{100 * (ours - dac) / dac:+.1f}%); best point ours {best['ours']:.3f}, "
            f"DAC {best['dac']:.3f}.",
        ]
    _plot(runs, workdir / "budget.png")
    lines.append(f"\nPlot: {workdir / 'budget.png'}")
    return "\n".join(lines)


def _plot(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in runs.items():
        xs = [p["session_wall_s"] / 60 for p in r["curve"]]
        ax.plot(xs, [p["mel_distance"] for p in r["curve"]], marker="o", label=name)
    ax.set_xlabel("wall-clock minutes of training")
    ax.set_ylabel(f"validation mel distance ({next(iter(runs.values()))['kbps']:g} kbps)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_budget", description=__doc__.split("\n")[0]
    )
    p.add_argument("--preset", default="configs/telugu16k.yaml")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per system")
    p.add_argument("--val-every-minutes", type=float, default=1.0)
    p.add_argument("--val-items", type=int, default=16, help="validation chunks (at most)")
    p.add_argument("--val-seconds", type=float, default=300.0, help="validation audio (at most)")
    p.add_argument("--systems", default="ours,dac", help="comma list of ours, dac")
    p.add_argument("--batch", type=int, default=None, help="per step (default: preset)")
    p.add_argument("--segment-samples", type=int, default=None, help="default: preset")
    p.add_argument("--data", type=Path, default=None, help="shard folder or audio folder")
    p.add_argument("--group-regex", default=TELUGU_SPEAKER, help="speaker field for the split")
    p.add_argument("--workdir", type=Path, default=Path("runs/budget"))
    p.add_argument("--ref-python", default=str(ROOT / ".venv-ref" / "bin" / "python"))
    p.add_argument("--tiny", action="store_true", help="debug-preset model sizes (CI)")
    p.add_argument("--report-only", action="store_true", help="only rebuild budget.md/png")
    p.add_argument("overrides", nargs="*", help="key=value config overrides for ours")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad or not systems:
        print(f"--systems: unknown {bad} (choose from {', '.join(SYSTEMS)})", file=sys.stderr)
        return 2
    for name in ("minutes", "val_every_minutes", "val_seconds"):
        if getattr(args, name) <= 0:
            print(f"--{name.replace('_', '-')} must be > 0", file=sys.stderr)
            return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        if args.data is not None and not args.data.is_dir():
            print(f"--data {args.data}: not a folder", file=sys.stderr)
            return 2
        from benchmarks.bench_step import prepare_shards

        shards = prepare_shards(args.data, args.workdir, args.tiny, group_regex=args.group_regex)
        arrays = args.workdir / "arrays"
        sizes = export_chunks(shards, arrays, args.val_items, args.val_seconds)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        probe = _probe(args)
        sr = probe.codec.sample_rate
        common = {
            "command": "python -m benchmarks.bench_budget "
            + shlex.join(argv if argv is not None else sys.argv[1:]),
            "machine": describe(),
            "date": f"{dt.datetime.now():%Y-%m-%d %H:%M}",
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "data": str(args.data) if args.data is not None else "generated speech-like audio",
            "minutes": args.minutes,
            "val_every_minutes": args.val_every_minutes,
            "val_chunks": sizes["val"]["chunks"],
            "val_seconds_audio": sizes["val"]["samples"] / sr,
            "train_seconds_audio": sizes["train"]["samples"] / sr,
            "batch": probe.data.batch_size,
            "segment_samples": probe.data.segment_samples,
        }
        for name in systems:
            rec = (
                run_ours(args, shards, device) if name == "ours" else run_dac(args, arrays, device)
            )
            (args.workdir / f"budget_{name}.json").write_text(
                json.dumps({**common, **rec}, indent=1)
            )
    md = report(args.workdir)
    (args.workdir / "budget.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
