"""Audit a shard set before training on it: ``python -m shards.audit SHARD_DIR [--png F]``.

Reads the manifest, ``report.json`` and every stored chunk (both splits) and reports:
level distribution (BS.1770 loudness re-measured on the stored audio, and the gain and
pre-normalisation loudness prep recorded), peak-guard count, silence share, DC offset,
runs of full-scale samples (in the stored chunks, and in the sources where prep recorded
them as ``source_clip_runs``), sample-rate consistency, and per-speaker / per-file totals.
``--png`` draws histograms of the loudness before and after normalisation.

Every member is read and every shard checked against the sha256 prep recorded in the
manifest (for local shards): a truncated or corrupt tar, an undecodable FLAC or a changed
shard is listed by file and key, never a traceback.

Exit status 2 when shards or samples are damaged (the report lists them all; one error line
names the first), 1 when something else would break training (:func:`problems`): samples at
or over full scale, NaN, a chunk whose rate differs from the manifest, or a level spread far
from the loudness target (the signature of per-clip peak normalisation or of a
skipped/doubled gain); 0 otherwise (warnings are printed but do not fail).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from shards import loudness
from shards.manifest import ShardInfo, load_manifest
from shards.reader_io import iter_tar_samples
from shards.tarwalk import TarFormatError
from telucodec.errors import UserInputError, environment_fault, run_cli

FULL_SCALE = 0.999  # |x| at or above this counts as full scale (24-bit FLAC of 1.0 clips)
CLIP_RUN = 3  # consecutive full-scale samples that make a clipping run
# Loudness-normalised chunks land within ~0.1 LU of the target; a chunk the peak guard did
# not lower and that is further off than this was not normalised the way prep does it.
LEVEL_TOLERANCE_LU = 1.0
MAX_OFF_TARGET_SHARE = 0.05  # more unguarded chunks off target than this fails the audit
DC_WARN = 0.01  # |mean| (full scale 1.0); speech has ~0 DC, a DC offset wastes headroom
SILENCE_WARN_SHARE = 0.5
GUARD_WARN_SHARE = 0.2


def full_scale_runs(x: np.ndarray, level: float = FULL_SCALE, min_run: int = CLIP_RUN) -> int:
    """Number of runs of at least ``min_run`` consecutive samples with ``|x| >= level`` in
    mono ``x`` (samples,): flat-topped clipping, not an isolated loud peak."""
    hot = np.abs(np.asarray(x)) >= level
    if not hot.any():
        return 0
    edges = np.diff(np.concatenate(([0], hot.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int(np.count_nonzero(ends - starts >= min_run))


@dataclass
class ChunkStats:
    key: str
    split: str
    rate: int
    seconds: float
    peak: float
    dc: float
    loudness_lufs: float
    clip_runs: int
    nonfinite: int
    meta: dict


@dataclass
class AuditReport:
    folder: str
    sample_rate: int
    target_lufs: float
    chunks: list[ChunkStats] = field(default_factory=list)
    prep_report: dict | None = None
    damaged: list[str] = field(default_factory=list)  # one line per damaged shard or sample
    checksums: str = "not recorded by prep"  # or "n of n verified"

    # -- aggregates ------------------------------------------------------------------
    def off_target(self) -> list[ChunkStats]:
        """Chunks the peak guard did not lower whose loudness is off the target."""
        return [
            c
            for c in self.chunks
            if not c.meta.get("peak_guard", False)
            and math.isfinite(c.loudness_lufs)
            and abs(c.loudness_lufs - self.target_lufs) > LEVEL_TOLERANCE_LU
        ]

    def problems(self) -> list[str]:
        """What would break training (non-empty -> exit status 1)."""
        out = []
        n = len(self.chunks)
        if self.damaged:
            out.append(
                f"{len(self.damaged)} damaged shards or samples (training skips undecodable "
                f"samples up to data.max_bad_sample_fraction): {'; '.join(self.damaged[:3])}"
                + (" ..." if len(self.damaged) > 3 else "")
            )
        if n == 0:
            return [*out, "no chunks in the shard set"]
        bad = [c for c in self.chunks if c.nonfinite]
        if bad:
            out.append(f"{len(bad)} chunks hold NaN/Inf samples (e.g. {bad[0].key})")
        hot = [c for c in self.chunks if c.peak >= FULL_SCALE]
        if hot:
            worst = max(hot, key=lambda c: c.peak)
            out.append(
                f"{len(hot)} of {n} chunks reach full scale (peak {worst.peak:.4f} in "
                f"{worst.key}); the codec's tanh output cannot reproduce them and clipped "
                "input teaches distortion. Re-run prep (its peak guard keeps every chunk at "
                "its ceiling)"
            )
        rates = sorted({c.rate for c in self.chunks})
        if rates != [self.sample_rate]:
            out.append(
                f"chunk sample rates {rates} Hz differ from the manifest's {self.sample_rate}"
            )
        off = self.off_target()
        if len(off) > MAX_OFF_TARGET_SHARE * n:
            lv = np.array([c.loudness_lufs for c in off])
            out.append(
                f"{len(off)} of {n} chunks are more than {LEVEL_TOLERANCE_LU} LU from the "
                f"{self.target_lufs} LUFS target without the peak guard explaining it "
                f"(their loudness spans {lv.min():.1f} .. {lv.max():.1f} LUFS): the chunks "
                "were not loudness-normalised (per-clip peak normalisation, or a gain "
                "skipped or applied twice)"
            )
        return out

    def warnings(self) -> list[str]:
        out = []
        n = len(self.chunks)
        if n == 0:
            return out
        dc = [c for c in self.chunks if abs(c.dc) > DC_WARN]
        if dc:
            out.append(f"{len(dc)} chunks have a DC offset above {DC_WARN} (e.g. {dc[0].key})")
        guard = sum(bool(c.meta.get("peak_guard")) for c in self.chunks)
        if guard > GUARD_WARN_SHARE * n:
            out.append(
                f"the peak guard lowered {guard} of {n} chunks: those sit below the target "
                "(very peaky sources, or a target too loud for the ceiling)"
            )
        src_runs = sum(int(c.meta.get("source_clip_runs", 0)) for c in self.chunks)
        if src_runs:
            files = {c.meta.get("source") for c in self.chunks if c.meta.get("source_clip_runs")}
            out.append(
                f"the sources hold {src_runs} runs of full-scale samples in {len(files)} "
                "files (clipped recordings; prep keeps them, at normalised level)"
            )
        share = self.silence_share()
        if share is not None and share > SILENCE_WARN_SHARE:
            out.append(f"{100 * share:.0f}% of the input was dropped as silence")
        return out

    def silence_share(self) -> float | None:
        rep = self.prep_report
        if not rep or not rep.get("input", {}).get("seconds"):
            return None
        return rep["seconds"]["silence"] / rep["input"]["seconds"]

    def totals(self, key: str) -> dict[str, tuple[int, float]]:
        """``{meta[key]: (chunks, seconds)}`` (``"?"`` when the metadata lacks it)."""
        out: dict[str, list] = defaultdict(lambda: [0, 0.0])
        for c in self.chunks:
            t = out[str(c.meta.get(key, "?"))]
            t[0] += 1
            t[1] += c.seconds
        return {k: (v[0], v[1]) for k, v in sorted(out.items())}

    def summary(self, max_rows: int = 12) -> str:
        n = len(self.chunks)
        lines = [
            f"audit of {self.folder}: {n} chunks, manifest {self.sample_rate} Hz, "
            f"target {self.target_lufs} LUFS; shard checksums: {self.checksums}"
        ]
        lines += [f"  damaged: {d}" for d in self.damaged[:max_rows]]
        if len(self.damaged) > max_rows:
            lines.append(f"  ... and {len(self.damaged) - max_rows} more damaged")
        if n:
            lv = np.array([c.loudness_lufs for c in self.chunks if math.isfinite(c.loudness_lufs)])
            gain = np.array([float(c.meta.get("gain_db", math.nan)) for c in self.chunks])
            before = np.array(
                [float(c.meta.get("loudness_before_lufs", math.nan)) for c in self.chunks]
            )
            for name, v, unit in (
                ("loudness after (measured)", lv, "LUFS"),
                ("loudness before (prep)", before, "LUFS"),
                ("gain (prep)", gain, "dB"),
            ):
                v = v[np.isfinite(v)]
                if v.size:
                    p = np.percentile(v, [0, 10, 50, 90, 100])
                    lines.append(
                        f"  {name}: min {p[0]:.1f} p10 {p[1]:.1f} p50 {p[2]:.1f} "
                        f"p90 {p[3]:.1f} max {p[4]:.1f} {unit}"
                    )
            peaks = np.array([c.peak for c in self.chunks])
            guard = sum(bool(c.meta.get("peak_guard")) for c in self.chunks)
            lines.append(
                f"  peak: max {peaks.max():.4f}, p50 {np.median(peaks):.3f}; peak guard "
                f"{guard} chunks; stored full-scale runs {sum(c.clip_runs for c in self.chunks)}"
                f"; source full-scale runs "
                + (
                    str(
                        sum(
                            int(c.meta["source_clip_runs"])
                            for c in self.chunks
                            if "source_clip_runs" in c.meta
                        )
                    )
                    if any("source_clip_runs" in c.meta for c in self.chunks)
                    else "not recorded by prep"
                )
            )
            lines.append(f"  DC offset: max |mean| {max(abs(c.dc) for c in self.chunks):.4f}")
            share = self.silence_share()
            lines.append(
                "  silence dropped: "
                + ("unknown (no report.json)" if share is None else f"{100 * share:.1f}% of input")
            )
            lines.append(f"  sample rates: {sorted({c.rate for c in self.chunks})} Hz")
            for key in ("speaker", "source"):
                tot = self.totals(key)
                lines.append(f"  per {key}: {len(tot)}")
                for name, (k, s) in list(tot.items())[:max_rows]:
                    lines.append(f"    {name}: {k} chunks, {s:.1f} s")
                if len(tot) > max_rows:
                    lines.append(f"    ... and {len(tot) - max_rows} more")
        for w in self.warnings():
            lines.append(f"WARNING: {w}")
        for p in self.problems():
            lines.append(f"PROBLEM: {p}")
        return "\n".join(lines)


def audit_shards(folder: str | Path, base: str | None = None) -> AuditReport:
    """Read every chunk of the shard set in ``folder`` (tars under ``base`` if given)."""
    m = load_manifest(folder)
    rep = AuditReport(str(folder), m.sample_rate, m.loudness_target_lufs)
    report_json = Path(folder) / "report.json"
    if report_json.exists():
        try:
            rep.prep_report = json.loads(report_json.read_text())
        except (UnicodeDecodeError, ValueError) as e:
            raise UserInputError(f"{report_json}: not readable JSON ({e})") from e
    # checksums of local files only: a pipe:/http source would be read twice to check them
    local = base is None or ("://" not in str(base) and not str(base).startswith("pipe:"))
    verified = recorded = 0
    for split in m.splits:
        infos = m.splits[split].shards
        for url, info in zip(m.shard_urls(split, base or folder), infos, strict=True):
            if info.sha256 and local:
                recorded += 1
                problem = checksum_problem(Path(url), info)
                verified += problem is None
                if problem:
                    rep.damaged.append(problem)
            count = _audit_shard(rep, url, split)
            if count != info.samples:
                rep.damaged.append(
                    f"{url}: {count} samples could be read, the manifest lists {info.samples}"
                )
    if recorded:
        rep.checksums = f"{verified} of {recorded} verified"
    return rep


def checksum_problem(path: Path, info: ShardInfo) -> str | None:
    """A line when the shard at ``path`` is missing or its sha256 is not the manifest's."""
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                sha.update(block)
    except OSError as e:
        return f"{path}: cannot read it ({e.strerror})"
    if sha.hexdigest() != info.sha256:
        return f"{path}: sha256 differs from the manifest's (changed or damaged after prep)"
    return None


def _audit_shard(rep: AuditReport, url: str, split: str) -> int:
    """Measure every sample of one shard into ``rep``; damage goes to ``rep.damaged``.
    Returns the number of samples the tar held (readable or not)."""
    count = 0
    try:
        for _, key, files in iter_tar_samples(url):
            count += 1
            if "flac" not in files:
                rep.damaged.append(f"{url}: sample {key} has no .flac member")
                continue
            try:
                x, rate = sf.read(io.BytesIO(files["flac"]), dtype="float64", always_2d=True)
                meta = json.loads(files["json"]) if "json" in files else {}
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
                rep.damaged.append(f"{url}: sample {key} cannot be decoded ({e})")
                continue
            x = x.mean(axis=1)
            finite = np.isfinite(x)
            xf = x[finite]
            try:
                lufs = loudness.integrated_loudness(xf, rate)
            except ValueError:  # shorter than one gating block
                lufs = math.nan
            rep.chunks.append(
                ChunkStats(
                    key=key,
                    split=split,
                    rate=int(rate),
                    seconds=len(x) / rate,
                    peak=float(np.abs(xf).max()) if xf.size else math.nan,
                    dc=float(xf.mean()) if xf.size else 0.0,
                    loudness_lufs=float(lufs),
                    clip_runs=full_scale_runs(xf),
                    nonfinite=int(np.count_nonzero(~finite)),
                    meta=meta,
                )
            )
    except TarFormatError as e:  # the rest of the tar cannot be read
        rep.damaged.append(str(e))
    except OSError as e:
        rep.damaged.append(f"{url}: cannot read it ({e.strerror or e})")
    return count
    return rep


def plot_levels(rep: AuditReport, path: str | Path) -> Path:
    """PNG with histograms of chunk loudness before (prep metadata) and after (measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = [c.meta.get("loudness_before_lufs") for c in rep.chunks]
    before = [float(b) for b in before if b is not None and math.isfinite(float(b))]
    after = [c.loudness_lufs for c in rep.chunks if math.isfinite(c.loudness_lufs)]
    fig, ax = plt.subplots(figsize=(8, 4))
    lo = min([*before, *after, rep.target_lufs - 10])
    hi = max([*before, *after, rep.target_lufs + 10])
    bins = np.linspace(math.floor(lo), math.ceil(hi), 60)
    if before:
        ax.hist(before, bins=bins, alpha=0.6, label="before normalisation (prep metadata)")
    ax.hist(after, bins=bins, alpha=0.6, label="stored chunks (measured)")
    ax.axvline(rep.target_lufs, color="k", linestyle="--", label="target")
    ax.set_xlabel("integrated loudness per chunk (LUFS)")
    ax.set_ylabel("chunks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="telucodec-audit", description=__doc__.split("\n")[0])
    p.add_argument("shards", help="shard folder (with manifest.json)")
    p.add_argument("--base", help="where the tar files are, if not beside the manifest")
    p.add_argument("--png", help="write a histogram of levels before/after to this file")
    p.add_argument("--json", help="write per-problem/warning summary as JSON to this file")
    args = p.parse_args(argv)
    return run_cli("telucodec-audit", lambda: _audit(args))


def _audit(args: argparse.Namespace) -> int:
    rep = audit_shards(args.shards, args.base)
    print(rep.summary())
    try:
        if args.png:
            print(f"levels histogram: {plot_levels(rep, args.png)}")
        if args.json:
            Path(args.json).write_text(
                json.dumps({"problems": rep.problems(), "warnings": rep.warnings()}, indent=2)
            )
    except OSError as e:  # a read-only or full folder: the environment, not a bug
        raise environment_fault(e, e.filename, "writing the audit output") from e
    if rep.damaged:
        # every member was read and the report above lists all damage; the error line names
        # the first, so a script sees exit 2 and a person sees where to look
        more = len(rep.damaged) - 1
        raise UserInputError(
            rep.damaged[0] + (f" (and {more} more damaged, listed above)" if more else "")
        )
    return 1 if rep.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
