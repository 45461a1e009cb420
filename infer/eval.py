"""``telucodec-eval``: quality per bitrate of an exported codec, beside Opus.

For every audio file in a folder (any format, rate, channels, level) the file is
conditioned exactly as prep does (:meth:`infer.api.TeluCodec.condition`); that signal, at
the file's own level, is the reference for both systems:

* the codec encodes it once with all codebooks (the first ``n`` codes of a residual VQ are
  the ``n``-codebook encoding) and decodes each requested prefix, loudness restored;
* Opus (:mod:`infer.opus`) codes the same samples at each Opus bitrate, delay-compensated.

Metrics (:mod:`codec.metrics`, the same definitions as the trainer's validation hook, plus
wideband PESQ and STOI): per file and averaged per system and bitrate. The mel distance uses
the mel spec recorded in the export (the run's ``loss.mel``, so eval ranks by the mel that
was trained, as validation does); an export without one (a DAC import, an older export) is
scored with the default spec, and the outputs say which was used. Output: ``eval.json``,
``eval.md`` and ``eval.png`` in ``--out`` (see :mod:`infer.report`), optionally W&B.

The codec runs in this process (on the GPU when there is one); scoring and the Opus round
trips, which are single-threaded CPU work (PESQ and STOI dominate), run in ``--jobs``
worker processes while the codec goes on to the next file. Results keep their order.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import sys
import tempfile
import warnings
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soxr
import torch

from codec import metrics
from codec.config import MelSpec
from codec.dac_import import as_export
from codec.export_format import mel_spec
from infer import opus
from infer.api import TeluCodec
from infer.report import summarise, write_outputs
from shards.audio import SUPPORTED_EXTENSIONS, AudioError, load_conditioned
from telucodec.errors import (
    ArgumentError,
    EnvironmentFault,
    UserInputError,
    environment_fault,
    run_cli,
)
from telucodec.progress import progress as progress_bar
from telucodec.wandb_mode import resolve_wandb_mode

PESQ_RATE = 16_000  # wideband PESQ is defined at 16 kHz
METRICS = (
    "snr_db",
    "si_snr_db",
    "mel_distance",
    "stft_distance",
    "pesq_wb",
    "stoi",
    "rms_ratio",
    "ref_peak",
    "est_peak",
)


def _pesq_stoi(ref: np.ndarray, est: np.ndarray, rate: int) -> tuple[float, float]:
    from pesq import pesq
    from pystoi import stoi

    if rate != PESQ_RATE:
        ref = soxr.resample(ref, rate, PESQ_RATE)
        est = soxr.resample(est, rate, PESQ_RATE)
    try:
        p = float(pesq(PESQ_RATE, ref.astype(np.float64), est.astype(np.float64), "wb"))
    except Exception as e:  # pesq raises its own types (no utterance, too short)
        warnings.warn(f"PESQ undefined for this clip ({type(e).__name__}: {e})", stacklevel=2)
        p = math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = float(stoi(ref, est, PESQ_RATE, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        # pystoi returns 1e-5 ("unintelligible") when under 30 frames (384 ms) of speech
        # remain after its silence removal: undefined, not a score, so it must not pull the
        # mean down
        warnings.warn("STOI undefined for this clip (under 384 ms of speech)", stacklevel=2)
        s = math.nan
    return p, s


def score(
    ref: np.ndarray, est: np.ndarray, rate: int, mel: MelSpec | None = None
) -> dict[str, float]:
    """All eval metrics for one clip: mono float32 ``ref`` and ``est`` of equal length;
    ``mel``: the spec of ``mel_distance`` (None: the default spec)."""
    r = torch.from_numpy(np.ascontiguousarray(ref, np.float32))[None]
    e = torch.from_numpy(np.ascontiguousarray(est, np.float32))[None]
    rep = metrics.reconstruction_report(r, e, rate, mel)
    out = {k: float(rep[k][0]) for k in ("snr_db", "si_snr_db", "mel_distance", "rms_ratio",
                                          "ref_peak", "est_peak")}  # fmt: skip
    out["stft_distance"] = float(metrics.stft_distance(r, e)[0])
    out["pesq_wb"], out["stoi"] = _pesq_stoi(ref, est, rate)
    # energies, not ratios: pieces and files are summed before the ratio (infer.report)
    out["band_energy_ref"] = metrics.band_energies(r, rate)[0].tolist()
    out["band_energy_est"] = metrics.band_energies(e, rate)[0].tolist()
    return out


def segment_bounds(n: int, seg: int) -> list[tuple[int, int]]:
    """``[start, end)`` pieces of ``seg`` samples covering ``n``; a last piece under half a
    segment joins the one before (too short for PESQ/STOI). ``seg <= 0``: one piece."""
    if seg <= 0 or n <= seg + seg // 2:
        return [(0, n)]
    pieces = [(a, min(a + seg, n)) for a in range(0, n, seg)]
    if pieces[-1][1] - pieces[-1][0] < seg // 2:
        pieces[-2:] = [(pieces[-2][0], n)]
    return pieces


def score_long(
    ref: np.ndarray, est: np.ndarray, rate: int, seg: int, mel: MelSpec | None = None
) -> dict[str, float]:
    """:func:`score` in pieces of ``seg`` samples (bounded memory and time for files of
    hours; PESQ and STOI are defined on utterance-length signals). Each metric is the
    duration-weighted mean over the pieces where it is defined, the peaks the maximum: the
    way validation averages over chunks. ``segments``: how many pieces."""
    parts = [
        (b - a, score(ref[a:b], est[a:b], rate, mel)) for a, b in segment_bounds(len(ref), seg)
    ]
    if len(parts) == 1:
        return {**parts[0][1], "segments": 1}
    acc = metrics.MetricAccumulator(skip_undefined=True)
    for n, p in parts:
        acc.add({m: p[m] for m in METRICS}, weight=n)
        acc.add_band_energies(p["band_energy_ref"], p["band_energy_est"])
    band_ref, band_est = acc.band_energy_sums()
    return {"segments": len(parts), "band_energy_ref": band_ref, "band_energy_est": band_est,
            **acc.result()}  # fmt: skip


def _opus_and_score(x: np.ndarray, rate: int, kbps: float, seg: int, mel: MelSpec) -> dict:
    y, info = opus.roundtrip(x, rate, kbps)
    scores = score_long(x, y, rate, seg, mel)
    return {"actual_kbps": info["actual_kbps"], "lag": info["lag"], **scores}


def eval_mel_spec(meta: dict) -> tuple[MelSpec, str]:
    """The mel spec eval scores an export with, and where it came from: ``"export"`` (the
    training ``loss.mel`` its ``codec.json`` records) or ``"default"`` (:class:`MelSpec`'s
    defaults, DAC's 16 kHz recipe, for exports that record none: the model may have been
    trained on another mel, so its mel distance is then not the one it was trained on)."""
    spec = mel_spec(meta)
    return (spec, "export") if spec is not None else (MelSpec(), "default")


def _worker_init() -> None:
    torch.set_num_threads(1)  # one process per core: no thread oversubscription


class _InlineExecutor(Executor):
    """``--jobs 1``: the same code path, run at submission in this process."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - delivered through the future, as a pool does
            f.set_exception(e)
        return f


def _executor(jobs: int) -> Executor:
    if jobs <= 1:
        return _InlineExecutor()
    # fork: workers start at once and need nothing but numpy, torch on CPU and the pesq and
    # pystoi modules (never CUDA, so a GPU in this process does not matter)
    ctx = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init)


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def find_audio(folder: str | Path) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUPPORTED_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"{root}: no audio files ({', '.join(SUPPORTED_EXTENSIONS)})")
    return files


def evaluate(
    tc: TeluCodec,
    files: list[Path],
    n_qs: list[int],
    opus_kbps: list[float],
    max_seconds: float | None = None,
    progress: bool = True,
    jobs: int = 1,
    segment_seconds: float = 30.0,
) -> dict:
    """Score ``files`` at each codebook count in ``n_qs`` and each Opus bitrate.

    jobs: worker processes for scoring and Opus (1 = all in this process).
    segment_seconds: files longer than this are scored in pieces of it (:func:`score_long`);
        0 = whole files, which the pesq library cannot score when they are long (it
        segfaults; BENCHMARKS.md, the eval section).

    Returns ``{"model", "files", "results": [{"system", "kbps", "n_q"?, "file", metrics...}],
    "summary": [...]}`` (summary: per system and bitrate means, see :func:`summarise`);
    ``model["mel_spec"]`` is the spec of every ``mel_distance`` (codec and Opus alike, so
    they compare) with ``source`` saying where it came from (:func:`eval_mel_spec`).
    Unusable audio files are listed under ``"skipped"`` with the reason.
    """
    if opus_kbps and not opus.available():
        raise FileNotFoundError("opusenc/opusdec not found (install opus-tools, or --opus-kbps '')")
    rows: list[dict] = []
    skipped: list[dict] = []
    rate = tc.sample_rate
    mel, mel_source = eval_mel_spec(tc.meta)
    seg = round(segment_seconds * rate)
    total = len(files) * (len(n_qs) + len(opus_kbps))
    bar = progress_bar(total, "eval", "run", disable=not progress)  # plain lines in a log
    # (row without metrics, future of its metrics), in order; bounded so that long files do
    # not pile up in memory faster than the workers score them
    pending: deque[tuple[dict, Future]] = deque()

    def collect(limit: int) -> None:
        while len(pending) > limit:
            row, fut = pending.popleft()
            rows.append({**row, **fut.result()})
            bar.update()

    with _executor(jobs) as pool:
        for path in files:
            try:
                x = load_conditioned(path, rate)
            except AudioError as e:
                skipped.append({"file": str(path), "reason": e.reason})
                bar.update(len(n_qs) + len(opus_kbps))
                continue
            if max_seconds:
                x = x[: round(max_seconds * rate)]
            cf = tc.encode(x, rate, n_quantizers=max(n_qs))
            for n in n_qs:
                y = tc.decode(cf, n_quantizers=n)
                row = {"system": "telucodec", "kbps": tc.bitrate_kbps(n), "n_q": n,
                       "file": str(path)}  # fmt: skip
                pending.append((row, pool.submit(score_long, x, y, rate, seg, mel)))
                collect(2 * jobs)
            for k in opus_kbps:
                row = {"system": "opus", "kbps": k, "file": str(path)}
                pending.append((row, pool.submit(_opus_and_score, x, rate, k, seg, mel)))
                collect(2 * jobs)
        collect(0)
    bar.close()
    return {
        "model": {
            "model_id": tc.model_id,
            "sample_rate": rate,
            "step": tc.meta.get("step"),
            "mel_spec": {"source": mel_source, **dataclasses.asdict(mel)},
        },
        "files": [str(f) for f in files],
        "skipped": skipped,
        "results": rows,
        "band_names": metrics.band_names(rate),
        "summary": summarise(rows, METRICS, metrics.band_names(rate)),
    }


def _parse_list(text: str) -> list[float]:
    return [float(v) for v in text.replace(",", " ").split()] if text.strip() else []


def log_to_wandb(result: dict, paths: dict, project: str, mode: str, out: Path) -> str | None:
    """The summary table, per-file results and the plot as one W&B run (``job_type`` eval),
    in the trainer's mode rules (auto: online with a key, else offline under ``out``). The
    files on disk are the result; a W&B failure is reported, never fatal. Returns the run's
    folder, or None when logging failed."""
    try:
        import wandb

        run = wandb.init(
            project=project,
            job_type="eval",
            config=result["model"],
            mode=resolve_wandb_mode(True, mode),
            dir=str(out),
        )
        cols = ["system", "kbps", *METRICS]
        run.log(
            {
                "eval/summary": wandb.Table(
                    columns=cols, data=[[r.get(c) for c in cols] for r in result["summary"]]
                ),
                "eval/files": wandb.Table(
                    columns=["file", *cols],
                    data=[[r["file"], *(r.get(c) for c in cols)] for r in result["results"]],
                ),
                "eval/plot": wandb.Image(str(paths["png"])),
            }
        )
        run_dir = run.dir
        run.finish()
        return str(Path(run_dir).parent)
    except Exception as e:  # noqa: BLE001 - the eval's files are written already
        print(f"telucodec-eval: W&B logging failed ({type(e).__name__}: {e}); "
              f"the results are in {out}", file=sys.stderr)  # fmt: skip
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="telucodec-eval", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True,
                   help="export folder (model.safetensors + codec.json), or a DAC weights "
                   "file / Hugging Face DAC folder (imported on the fly)")  # fmt: skip
    p.add_argument("--audio", required=True, help="folder of audio files (searched recursively)")
    p.add_argument("--out", required=True, help="folder for eval.json, eval.md, eval.png")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--n-q", default="", help="codebook counts, e.g. '4,8,12' (default: all)")
    g.add_argument("--kbps", default="", help="codec bitrates instead, e.g. '2,4,6'")
    p.add_argument("--opus-kbps", default=",".join(f"{k:g}" for k in opus.OPUS_KBPS),
                   help="Opus bitrates ('' = no Opus)")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=None, help="score only the first N s")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:N")
    p.add_argument("--wandb-project", default=None, help="also log the table and plot to W&B")
    p.add_argument("--wandb-mode", default="auto", choices=("auto", "online", "offline"),
                   help="auto: online with an API key, else offline (wandb sync later)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="worker processes for scoring and Opus (default: the usable CPU "
                   "cores; 1 = in this process)")  # fmt: skip
    p.add_argument("--segment-seconds", type=float, default=30.0,
                   help="score files longer than this in pieces of it, averaged by duration "
                   "(0 = whole files; PESQ crashes on files of 10 minutes)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    return run_cli("telucodec-eval", lambda: _eval(args))


def _eval(args: argparse.Namespace) -> int:
    # a DAC file or Hugging Face folder is imported into a temporary export first (the same
    # export, model id included, that telucodec-import would write); loading reads it whole
    with tempfile.TemporaryDirectory(prefix="telucodec-import-") as tmp:
        tc = TeluCodec.load(as_export(args.model, tmp), args.device)
    try:
        if args.kbps:
            n_qs = [tc.n_q_for_kbps(k) for k in _parse_list(args.kbps)]
        elif args.n_q:
            n_qs = [int(v) for v in _parse_list(args.n_q)]
        else:
            n_qs = list(range(1, tc.n_codebooks + 1))
        for n in n_qs:
            tc._n_q(n)
        opus_kbps = _parse_list(args.opus_kbps)
    except ValueError as e:  # --kbps / --n-q / --opus-kbps not numbers, or outside the model
        raise ArgumentError(str(e)) from e
    try:
        files = find_audio(args.audio)
    except FileNotFoundError as e:  # --audio is not a folder, or holds no audio
        raise UserInputError(str(e)) from e
    try:
        result = evaluate(tc, files, sorted(set(n_qs)), opus_kbps,
                          args.max_seconds, progress=not args.no_progress,
                          jobs=args.jobs, segment_seconds=args.segment_seconds)  # fmt: skip
    except FileNotFoundError as e:  # opusenc/opusdec missing (the message says what to do)
        raise EnvironmentFault(str(e), path=e.filename) from e
    try:
        paths = write_outputs(result, args.out)
    except OSError as e:  # a read-only or full --out
        raise environment_fault(e, e.filename or args.out, "writing the evaluation") from e
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    if args.wandb_project:
        log_to_wandb(result, paths, args.wandb_project, args.wandb_mode, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
