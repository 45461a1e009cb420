"""Eval outputs: per-bitrate means, ``eval.json``, a Markdown table and a PNG plot."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from codec import metrics

# Columns of the Markdown table: (metric, header, format); direction in the header.
TABLE = (
    ("mel_distance", "mel dist (lower)", "{:.3f}"),
    ("stft_distance", "MR-STFT (lower)", "{:.3f}"),
    ("pesq_wb", "PESQ-WB", "{:.2f}"),
    ("stoi", "STOI", "{:.3f}"),
    ("si_snr_db", "SI-SNR dB", "{:.1f}"),
    ("snr_db", "SNR dB", "{:.1f}"),
    ("rms_ratio", "RMS out/in", "{:.3f}"),
    ("est_peak", "peak out", "{:.3f}"),
)
PLOTTED = ("mel_distance", "pesq_wb", "stoi", "si_snr_db")


def _undefined(v: float | None) -> bool:
    return v is None or math.isnan(v)


def _mean(values: list[float]) -> float:
    ok = [v for v in values if not _undefined(v)]
    return sum(ok) / len(ok) if ok else math.nan


def summarise(
    rows: list[dict], metric_names: Sequence[str], band_names: Sequence[str] = ()
) -> list[dict]:
    """Every metric per (system, kbps) over its clips, combined by
    :class:`codec.metrics.MetricAccumulator` (means NaN-skipping, e.g. PESQ on a silent clip;
    peaks the largest); ordered by system then bitrate. Each entry also has ``files`` (how many clips), when
    some clips had no value for a metric ``undefined`` (metric -> how many), and with
    ``band_names`` the output/input level per band over all clips' energies together
    (``band_levels``)."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["system"], r["kbps"]), []).append(r)
    out = []
    for (system, kbps), rs in sorted(groups.items()):
        entry = {"system": system, "kbps": kbps, "files": len(rs)}
        if "n_q" in rs[0]:
            entry["n_q"] = rs[0]["n_q"]
        if "actual_kbps" in rs[0]:
            entry["actual_kbps"] = _mean([r["actual_kbps"] for r in rs])
        acc = metrics.MetricAccumulator(skip_undefined=True)
        for r in rs:
            acc.add({m: r[m] for m in metric_names})
            if band_names:
                acc.add_band_energies(r["band_energy_ref"], r["band_energy_est"])
        means = acc.result()
        entry.update({m: means[m] for m in metric_names})
        if acc.undefined:  # e.g. PESQ or STOI of a clip too short to score: not in the mean
            entry["undefined"] = {m: acc.undefined[m] for m in metric_names if m in acc.undefined}
        if band_names:
            entry["band_levels"] = acc.band_levels(band_names)
        out.append(entry)
    return out


def markdown(result: dict) -> str:
    """The summary as a Markdown table (one row per system and bitrate)."""
    head = ["system", "kbps", *[h for _, h, _ in TABLE]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in result["summary"]:
        name = e["system"] + (f" (n_q={e['n_q']})" if "n_q" in e else "")
        kbps = f"{e['kbps']:g}" + (f" ({e['actual_kbps']:.1f})" if "actual_kbps" in e else "")
        cells = [name, kbps] + [fmt.format(e[m]) for m, _, fmt in TABLE]
        lines.append("| " + " | ".join(cells) + " |")
    n = len(result["files"]) - len(result["skipped"])
    lines.append("")
    lines.append(
        f"Means over {n} file(s); model {result['model']['model_id']}. Opus kbps in brackets: "
        "measured from the Ogg file size (container included)."
    )
    mel = result["model"].get("mel_spec")
    if mel is not None:  # evaluate() records it; a result assembled by hand may not
        scales = ", ".join(
            f"{w}/{m}" for w, m in zip(mel["window_lengths"], mel["n_mels"], strict=True)
        )
        if mel["source"] == "export":
            said = "the model's training mel spec (codec.json)"
        else:  # a DAC import or an older export: the trained mel is unknown
            said = "the default mel spec (DAC's 16 kHz recipe; this export records no training mel)"
        lines.append(f"Mel distance: {said}, window/mels {scales}.")
    heads = {m: h for m, h, _ in TABLE}
    worst: dict[str, int] = {}  # per metric, the most clips undefined in any row
    for e in result["summary"]:
        for m, k in e.get("undefined", {}).items():
            worst[m] = max(worst.get(m, 0), k)
    if worst:
        said = ", ".join(f"{heads.get(m, m)} on {k} file(s)" for m, k in worst.items())
        lines.append(
            f"Undefined, so left out of those means: {said} (too short or silent to score; "
            "per file in eval.json)."
        )
    names = result.get("band_names") or []
    if names and all("band_levels" in e for e in result["summary"]):
        lines += ["", "Level out/in by frequency band (all files' energy together):", ""]
        lines.append("| system | kbps | " + " | ".join(names) + " |")
        lines.append("|" + "---|" * (len(names) + 2))
        for e in result["summary"]:
            name = e["system"] + (f" (n_q={e['n_q']})" if "n_q" in e else "")
            cells = [f"{e['band_levels'][b]:.2f}" for b in names]
            lines.append(f"| {name} | {e['kbps']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Quality against kbps, codec vs Opus, one panel per metric in :data:`PLOTTED`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.4))
    for ax, m in zip(axes, PLOTTED, strict=True):
        for system, style in (("telucodec", "o-"), ("opus", "s--")):
            pts = [(e["kbps"], e[m]) for e in result["summary"] if e["system"] == system]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, label=system)
        ax.set_xlabel("kbps")
        ax.set_title(dict((k, h) for k, h, _ in TABLE)[m])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(result: dict, out_dir: str | Path) -> dict:
    """Write ``eval.json``, ``eval.md``, ``eval.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "eval.json", "md": out / "eval.md", "png": out / "eval.png"}

    def clean(v):  # JSON has no NaN/inf: write null
        return None if isinstance(v, float) and not math.isfinite(v) else v

    def walk(o):
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return clean(o)

    paths["json"].write_text(json.dumps(walk(result), indent=2))
    paths["md"].write_text(markdown(result))
    plot(result, paths["png"])
    return paths
