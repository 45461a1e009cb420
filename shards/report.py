"""What a prep run kept, dropped and rejected: ``report.json``, ``report.md``, console summary.

Every second of every input lands in exactly one category (source seconds):

    kept_train, kept_val   stored in shards
    silence                chunks below the silence floor
    short_tail             a recording's last partial chunk, shorter than min_chunk_seconds
    split_gap              the gap before the held-out tail (time split)
    rejected               whole recordings that could not be used (reason listed);
                           duration "unknown" when even the header is unreadable

A recording's seconds are those decoded, which is what the categories split: an MP3 header
only estimates the length, and a WAV cut short on disk declares more than it holds. Where
the header said otherwise, ``header_duration_s`` keeps its figure and a difference worth a
look is listed under ``length_warnings``. Folders the input search did not enter (link
loops, unlistable) are listed under ``skipped``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CATEGORIES = ("kept_train", "kept_val", "silence", "short_tail", "split_gap", "rejected")


@dataclass
class FileReport:
    """Per-recording outcome. ``status``: ok | empty (readable, nothing kept: see ``note``)
    | rejected (see ``reason``). ``seconds``: per category, summing to ``duration_s``."""

    source: str
    file_id: str
    status: str = "ok"
    reason: str | None = None
    note: str | None = None
    duration_s: float | None = None  # decoded seconds (header's for a rejected file)
    header_duration_s: float | None = None  # set when the header states another length
    warning: str | None = None  # e.g. a truncated file: kept, but worth a look
    orig_rate: int | None = None
    orig_channels: int | None = None
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0.0))
    chunks_kept: int = 0
    chunks_silence: int = 0
    peak_guard_chunks: int = 0
    spool: str | None = None  # worker -> main hand-over; never in the report

    def reject(self, reason: str, duration_s: float | None) -> None:
        self.status, self.reason, self.duration_s = "rejected", reason, duration_s
        self.seconds = dict.fromkeys(CATEGORIES, 0.0)
        self.seconds["rejected"] = duration_s or 0.0
        self.chunks_kept = self.chunks_silence = self.peak_guard_chunks = 0

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("spool")
        if self.note and self.status == "ok":
            d["status"] = "empty"
        d["seconds"] = {k: round(v, 6) for k, v in self.seconds.items()}
        return d


def _distribution(values: list[float]) -> dict | None:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {
        "count": int(v.size),
        "min": round(float(v.min()), 3),
        "p10": round(float(p10), 3),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "max": round(float(v.max()), 3),
    }


def build_report(
    files: list[FileReport],
    level_stats: dict[str, list],
    config,
    skipped: list[tuple[str, str]] | None = None,
) -> dict:
    """files: per-recording reports; level_stats: ``before``/``after`` loudness (LUFS) and
    ``guard`` flags of every kept chunk; config: the PrepConfig; skipped: (path, reason) of
    folders the input search did not enter."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for f in files:
        for k in CATEGORIES:
            totals[k] += f.seconds[k]
    known = [f.duration_s for f in files if f.duration_s is not None]
    guards = int(sum(level_stats["guard"]))
    kept = len(level_stats["guard"])
    return {
        "config": config.to_dict(),
        "input": {
            "files": len(files),
            "seconds": round(sum(known), 6),
            "files_with_unknown_duration": [f.source for f in files if f.duration_s is None],
        },
        "seconds": {k: round(v, 6) for k, v in totals.items()},
        "chunks": {
            "kept": kept,
            "silence": sum(f.chunks_silence for f in files),
            "peak_guard": guards,
            "peak_guard_share": round(guards / kept, 6) if kept else 0.0,
        },
        "loudness_before_lufs": _distribution(level_stats["before"]),
        "loudness_after_lufs": _distribution(level_stats["after"]),
        "rejected": [
            {"source": f.source, "reason": f.reason, "seconds": f.duration_s}
            for f in files
            if f.status == "rejected"
        ],
        "nothing_kept": [
            {"source": f.source, "reason": f.note} for f in files if f.status == "ok" and f.note
        ],
        "length_warnings": [
            {"source": f.source, "warning": f.warning}
            for f in files
            if f.status == "ok" and f.warning
        ],
        "skipped": [{"path": p, "reason": why} for p, why in (skipped or [])],
        "files": [f.to_json() for f in files],
    }


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{seconds / 3600:.3f} h" if seconds >= 3600 else f"{seconds:.1f} s"


def format_summary(report: dict, max_listed: int = 10) -> str:
    """A few lines for the console (at most ``max_listed`` problem files named)."""
    s = report["seconds"]
    c = report["chunks"]
    unknown = report["input"]["files_with_unknown_duration"]
    lines = [
        f"input: {report['input']['files']} files, {_hms(report['input']['seconds'])}",
        f"kept: train {_hms(s['kept_train'])}, val {_hms(s['kept_val'])} ({c['kept']} chunks)",
        f"dropped: silence {_hms(s['silence'])} ({c['silence']} chunks), "
        f"short tails {_hms(s['short_tail'])}, split gaps {_hms(s['split_gap'])}",
        f"rejected: {len(report['rejected'])} files, {_hms(s['rejected'])}"
        + (f" ({len(unknown)} of unknown duration)" if unknown else ""),
        f"peak guard: {c['peak_guard']} chunks ({100 * c['peak_guard_share']:.1f}%)",
    ]
    la = report["loudness_after_lufs"]
    if la:
        lines.append(
            f"loudness after: p10 {la['p10']} / p50 {la['p50']} / p90 {la['p90']} LUFS "
            f"(target {report['config']['loudness_target_lufs']})"
        )
    listed = [f"  rejected {r['source']}: {r['reason']}" for r in report["rejected"]]
    listed += [f"  nothing kept from {r['source']}: {r['reason']}" for r in report["nothing_kept"]]
    listed += [f"  length of {r['source']}: {r['warning']}" for r in report["length_warnings"]]
    listed += [f"  skipped folder {r['path']}: {r['reason']}" for r in report["skipped"]]
    lines += [f"split: {report[k]}" for k in ("split_note", "split_warning") if report.get(k)]
    lines += listed[:max_listed]
    if len(listed) > max_listed:
        lines.append(f"  ... and {len(listed) - max_listed} more (see report.md)")
    return "\n".join(lines)


def _md_dist(name: str, d: dict | None) -> str:
    if d is None:
        return f"| {name} | - | - | - | - | - | 0 |"
    return (
        f"| {name} | {d['min']} | {d['p10']} | {d['p50']} | {d['p90']} | {d['max']} "
        f"| {d['count']} |"
    )


def to_markdown(report: dict) -> str:
    s = report["seconds"]
    c = report["chunks"]
    total = report["input"]["seconds"]
    out = [
        "# Prep report",
        "",
        f"Input: {report['input']['files']} files, {total:.3f} s ({total / 3600:.3f} h).",
        "",
        "| category | seconds | share |",
        "|---|---:|---:|",
    ]
    for k in CATEGORIES:
        share = f"{100 * s[k] / total:.2f}%" if total else "-"
        out.append(f"| {k} | {s[k]:.3f} | {share} |")
    unknown = report["input"]["files_with_unknown_duration"]
    if unknown:
        out.append(f"| rejected, duration unknown | {len(unknown)} files | |")
    for key in ("split_note", "split_warning"):  # set by prep once the shards are written
        if report.get(key):
            out += ["", f"**Split:** {report[key]}."]
    out += [
        "",
        f"Chunks kept: {c['kept']}; dropped as silence: {c['silence']}; "
        f"peak guard acted on {c['peak_guard']} ({100 * c['peak_guard_share']:.2f}%).",
        "",
        "| loudness (LUFS) | min | p10 | p50 | p90 | max | chunks |",
        "|---|---:|---:|---:|---:|---:|---:|",
        _md_dist("before", report["loudness_before_lufs"]),
        _md_dist("after", report["loudness_after_lufs"]),
        "",
    ]
    if report["rejected"]:
        out += ["## Rejected", "", "| file | reason | seconds |", "|---|---|---:|"]
        for r in report["rejected"]:
            secs = "unknown" if r["seconds"] is None else f"{r['seconds']:.3f}"
            out.append(f"| {r['source']} | {r['reason']} | {secs} |")
        out.append("")
    if report["nothing_kept"]:
        out += ["## Nothing kept", "", "| file | reason |", "|---|---|"]
        out += [f"| {r['source']} | {r['reason']} |" for r in report["nothing_kept"]]
        out.append("")
    if report["length_warnings"]:
        out += ["## Length differs from the header", "", "| file | note |", "|---|---|"]
        out += [f"| {r['source']} | {r['warning']} |" for r in report["length_warnings"]]
        out.append("")
    if report["skipped"]:
        out += ["## Folders not searched", "", "| folder | reason |", "|---|---|"]
        out += [f"| {r['path']} | {r['reason']} |" for r in report["skipped"]]
        out.append("")
    out += [
        "## Per file",
        "",
        "| file | status | seconds | " + " | ".join(CATEGORIES) + " | guard |",
        "|---|---|---:|" + "---:|" * len(CATEGORIES) + "---:|",
    ]
    for f in report["files"]:
        dur = "unknown" if f["duration_s"] is None else f"{f['duration_s']:.3f}"
        cells = " | ".join(f"{f['seconds'][k]:.3f}" for k in CATEGORIES)
        out.append(
            f"| {f['source']} | {f['status']} | {dur} | {cells} | {f['peak_guard_chunks']} |"
        )
    return "\n".join(out) + "\n"


def write_report(out_dir: str | os.PathLike, report: dict) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``."""
    out = Path(out_dir)
    j, m = out / "report.json", out / "report.md"
    j.write_text(json.dumps(report, indent=2))
    m.write_text(to_markdown(report))
    return j, m
