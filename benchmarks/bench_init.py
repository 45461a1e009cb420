"""The init path end to end: pretrain, export, fine-tune from the export vs train from scratch.

One command (issue 16, item 7)::

    python -m benchmarks.bench_init --preset configs/cpu.yaml --minutes 20 \
        --val-every-minutes 2 --data ../shared/data/telugu-emotion --workdir runs/bench_init

What it does, with the real trainer (:func:`trainer.train.train`) throughout:

1. splits the recordings by speaker (``--group-regex``, the Telugu clips' ``SPK..`` field)
   into two disjoint halves, ``pretrain`` and ``target``, and preps each into its own shard
   set (each half's last speaker held out for validation);
2. **pretrain**: the preset on the ``pretrain`` speakers for ``--minutes``, then exported;
3. the export's own score on the ``target`` validation set (the validation hook's metrics,
   at the operating point);
4. **(a) fine-tune**: the preset on the ``target`` speakers for ``--minutes`` with
   ``model.init_from=<the export>``, ``optim.disc_warmup_steps`` = ``--warmup-steps`` and a
   first validation at exactly that step: the generator is still the export there, so (a)'s
   first point must equal step 3's score (checked, to 1e-6), and (a)'s curve starts where
   the pretraining ended instead of where an untrained model starts;
5. **(b) scratch**: the same run without ``init_from`` (and without warm-up);
6. ``init.json`` and ``init.md`` (both curves: mel distance, SNR, RMS ratio against minutes)
   in ``--workdir``.

``--max-files N`` keeps about N recordings of each half, spread over its speakers (a quick
smoke run). Validation
time counts against each budget, as in :mod:`benchmarks.bench_budget`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import torch

from benchmarks.machine import describe

TELUGU_SPEAKER = r"SPK[FM]\d+"
EXACT = 1e-6  # (a)'s first validation vs the export's own score (same model, same chunks)


def split_speakers(
    data: Path, regex: str, max_files: int | None
) -> dict[str, dict[str, list[Path]]]:
    """Speaker -> files for two halves of ``data`` with no speaker in common: speakers
    sorted and dealt alternately (both halves mix female and male voices when the names
    say so). ``max_files``: at most this many files per half, taken round-robin over its
    speakers so every speaker keeps some."""
    from shards.audio import SUPPORTED_EXTENSIONS

    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in SUPPORTED_EXTENSIONS)
    by_speaker: dict[str, list[Path]] = {}
    for f in files:
        m = re.search(regex, str(f.relative_to(data)))
        if m:
            by_speaker.setdefault(m.group(0), []).append(f)
    speakers = sorted(by_speaker)
    if len(speakers) < 4:
        raise SystemExit(f"--data {data}: {len(speakers)} speakers match {regex!r}; need >= 4")
    halves: dict[str, dict[str, list[Path]]] = {"pretrain": {}, "target": {}}
    for i, spk in enumerate(speakers):
        halves["pretrain" if i % 2 == 0 else "target"][spk] = by_speaker[spk]
    if max_files:
        for half in halves.values():
            per = max(1, max_files // len(half))
            for spk in half:
                half[spk] = half[spk][:per]
    return halves


def prep_half(half: dict[str, list[Path]], out: Path) -> Path:
    """Shards of one half; its last speaker (in sorted order) is the validation set, so
    validation is unseen speakers and never empty."""
    from shards.prep import PrepConfig, prep_corpus
    from shards.split import SplitConfig

    files = [f for fs in half.values() for f in fs]
    listing, val_list = out.parent / f"{out.name}.txt", out.parent / f"{out.name}_val.txt"
    listing.write_text("\n".join(str(f.resolve()) for f in files) + "\n")
    val_list.write_text(sorted(half)[-1] + "\n")
    regex = "|".join(re.escape(s) for s in half)
    split = SplitConfig(mode="list", val_list=str(val_list), group_regex=regex)
    prep_corpus(listing, out, PrepConfig(split=split, overwrite=True), progress=False)
    return out


def config(args, shards: Path, name: str, *extra: str):
    from trainer.config import load_config

    return load_config(
        args.preset,
        [
            f"data.shards={shards}",
            f"run.output_dir={args.workdir / 'runs'}",
            f"run.name={name}",
            f"run.max_minutes={args.minutes}",
            "run.max_steps=1000000000",
            f"validation.every_minutes={args.val_every_minutes}",
            "checkpoint.every_steps=1000000000",
            "wandb.enabled=false",
            *extra,
            *args.overrides,
        ],
    )


def curve(run_dir: Path, kbps: float) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tag = f"val/{kbps:g}kbps"
    return [
        {
            "step": r["step"],
            "minutes": r["val/session_wall_s"] / 60,
            "mel_distance": r[f"{tag}/mel_distance"],
            "snr_db": r[f"{tag}/snr_db"],
            "rms_ratio": r[f"{tag}/rms_ratio"],
        }
        for r in rows
        if "val/session_wall_s" in r
    ]


def export_score(cfg, export_dir: Path) -> dict:
    """The export on ``cfg``'s validation set at the operating point (the hook's metrics)."""
    from codec.export_format import load_exported
    from shards.reader import iter_validation
    from trainer.validation import validate

    codec, _ = load_exported(export_dir)
    n = cfg.codec.operating_n_quantizers
    items = iter_validation(
        cfg.data.shards, max_items=cfg.validation.max_items,
        max_seconds=cfg.validation.max_seconds,
    )  # fmt: skip
    # the run's loss.mel, as its validator scores: otherwise (a)'s first point and this
    # score agree only while the preset keeps the default mel
    res = validate(codec, items, [n], {n: cfg.codec.bitrate_kbps(n)}, cfg.codec.sample_rate,
                   torch.device("cpu"), audio_examples=0, mel=cfg.loss.mel)  # fmt: skip
    at = res.at(n)
    return {"mel_distance": at.mel_distance, "snr_db": at.snr_db, "rms_ratio": at.rms_ratio}


class StageStopped(RuntimeError):
    """A stage's training was stopped (SIGTERM, Ctrl-C, a stop file) before its budget."""


def completed(result, stage: str):
    """``result`` of a stage's ``train()``, unless it was stopped early: the trainer treats a
    signal as a request to save and return, so without this check the benchmark would go on
    to the next stage and report curves with a cut budget as if they were comparable."""
    if result.stop_reason.startswith("stop requested"):
        raise StageStopped(
            f"{stage}: {result.stop_reason} at step {result.steps}; nothing recorded"
        )
    return result


def run(args) -> dict:
    from trainer.train import train

    halves = split_speakers(args.data, args.group_regex, args.max_files)
    shards = {k: prep_half(v, args.workdir / f"shards_{k}") for k, v in halves.items()}
    shutil.rmtree(args.workdir / "runs", ignore_errors=True)
    pre_cfg = config(args, shards["pretrain"], "pretrain")
    kbps = pre_cfg.codec.bitrate_kbps(pre_cfg.codec.operating_n_quantizers)
    val_kbps = f"validation.kbps=[{kbps}]"
    pre_cfg = config(args, shards["pretrain"], "pretrain", val_kbps)
    pre = completed(train(pre_cfg), "pretrain")
    w = args.warmup_steps
    a_cfg = config(args, shards["target"], "finetune", val_kbps,
                   f"model.init_from={pre.export_dir}", f"optim.disc_warmup_steps={w}",
                   f"validation.every_steps={w}")  # fmt: skip
    own = export_score(a_cfg, pre.export_dir)
    a = completed(train(a_cfg), "finetune")
    b_cfg = config(args, shards["target"], "scratch", val_kbps, f"validation.every_steps={w}")
    b = completed(train(b_cfg), "scratch")
    rec = {
        "command": "python -m benchmarks.bench_init " + shlex.join(args.argv),
        "machine": describe(),
        "date": f"{dt.datetime.now():%Y-%m-%d %H:%M}",
        "preset": args.preset,
        "minutes": args.minutes,
        "kbps": kbps,
        "warmup_steps": w,
        "speakers": {k: sorted(v) for k, v in halves.items()},
        "files": {k: sum(len(f) for f in v.values()) for k, v in halves.items()},
        "pretrain": {"steps": pre.steps, "curve": curve(pre.run_dir, kbps)},
        "export_on_target_val": own,
        "finetune": {"steps": a.steps, "curve": curve(a.run_dir, kbps)},
        "scratch": {"steps": b.steps, "curve": curve(b.run_dir, kbps)},
    }
    first = rec["finetune"]["curve"][0]
    rec["first_point_is_the_export"] = (
        first["step"] <= w and abs(first["mel_distance"] - own["mel_distance"]) <= EXACT
    )
    return rec


def report(rec: dict) -> str:
    own = rec["export_on_target_val"]
    lines = [
        f"Preset {rec['preset']}, {rec['minutes']:g} min per run, {rec['kbps']:g} kbps, "
        f"files {rec['files']}; {rec['machine']}; {rec['date']}",
        f"Command: `{rec['command']}`",
        "",
        f"Pretrained {rec['pretrain']['steps']} steps on the other speakers; its export on "
        f"the target validation set: mel {own['mel_distance']:.3f}, SNR "
        f"{own['snr_db']:.2f} dB, RMS ratio {own['rms_ratio']:.3f}. Fine-tune's first "
        f"validation (step <= {rec['warmup_steps']}, inside the discriminator warm-up) equals "
        f"it: **{'yes' if rec['first_point_is_the_export'] else 'NO'}**.",
        "",
        "| run | min | step | mel dist | SNR dB | RMS ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("pretrain", "finetune", "scratch"):
        for p in rec[name]["curve"]:
            lines.append(
                f"| {name} | {p['minutes']:.2f} | {p['step']} | {p['mel_distance']:.3f} | "
                f"{p['snr_db']:.2f} | {p['rms_ratio']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_init",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--preset", default="configs/cpu.yaml")
    p.add_argument("--minutes", type=float, default=20.0, help="budget of each of the 3 runs")
    p.add_argument("--val-every-minutes", type=float, default=2.0)
    p.add_argument("--warmup-steps", type=int, default=20,
                   help="fine-tune's discriminator warm-up; its first validation is here")  # fmt: skip
    p.add_argument("--data", type=Path, required=True, help="audio folder (speakers in names)")
    p.add_argument("--group-regex", default=TELUGU_SPEAKER)
    p.add_argument("--max-files", type=int, default=None, help="per half (smoke runs)")
    p.add_argument("--workdir", type=Path, default=Path("runs/bench_init"))
    p.add_argument("overrides", nargs="*", help="key=value config overrides for all runs")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.minutes <= 0 or args.val_every_minutes <= 0 or args.warmup_steps < 1:
        print("--minutes and --val-every-minutes must be > 0, --warmup-steps >= 1",
              file=sys.stderr)  # fmt: skip
        return 2
    if not args.data.is_dir():
        print(f"--data {args.data}: not a folder", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        rec = run(args)
    except StageStopped as e:
        print(f"bench_init: {e}", file=sys.stderr)
        return 1
    (args.workdir / "init.json").write_text(json.dumps(rec, indent=1))
    md = report(rec)
    (args.workdir / "init.md").write_text(md + "\n")
    print(md)
    return 0 if rec["first_point_is_the_export"] else 1


if __name__ == "__main__":
    sys.exit(main())
