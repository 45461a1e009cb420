"""Commands: ``telucodec-encode`` (audio -> ``.tcc``) and ``telucodec-decode`` (back).

    telucodec-encode IN.flac OUT.tcc --model EXPORT
    telucodec-encode a.flac b.wav ... --out-dir codes/ --model EXPORT     # many, batched
    telucodec-decode IN.tcc OUT.wav --model EXPORT [--rate input|model|HZ]
    telucodec-decode codes/*.tcc --out-dir wav/ --model EXPORT

Thin wrappers around :class:`infer.api.TeluCodec`. A bad input (unreadable audio, a code
file from another model, truncated, damaged or of another format version) is named on
stderr in one line; with many inputs the others still run. Exit status 2 when any input
failed, and for a bad model folder or argument or a fault of the environment (a read-only
or full output folder), which stop the command (:func:`telucodec.errors.run_cli`).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from infer.api import RATES, TeluCodec
from infer.blocks import DEFAULT_BLOCK_SECONDS
from infer.codefile import HEADER_BYTES
from infer.fast import PRECISIONS
from infer.files import FileResult
from telucodec.errors import ArgumentError, TeluCodecError, environment_fault, run_cli

ERRORS = (TeluCodecError,)  # one input's fault: reported, the other inputs go on


def _common(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help=f"{what}: IN OUT, or IN... with --out-dir")  # fmt: skip
    p.add_argument("--out-dir", default=None, help="write <stem> of every input here")
    p.add_argument("--model", required=True, help="export folder (model.safetensors + codec.json)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:N")
    p.add_argument(
        "--block-seconds",
        type=float,
        default=DEFAULT_BLOCK_SECONDS,
        help="audio per processing window (memory vs. overhead; results do not depend on it)",
    )
    p.add_argument("--batch-windows", type=int, default=None,
                   help="windows per forward pass (default: 1 on CPU, 16 on GPU)")  # fmt: skip
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32",
                   help="bf16: ~2x faster on CPUs with AMX/AVX512-BF16; output differs "
                        "slightly (see BENCHMARKS.md)")  # fmt: skip
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the Snake activations (~15-20 s once; long inputs)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch)")


def _jobs(p: argparse.ArgumentParser, args) -> list[tuple[str, str]] | None:
    """(input, output) pairs for the IN OUT form; None for the --out-dir form."""
    if args.out_dir is not None:
        return None
    if len(args.paths) != 2:
        p.error("give IN OUT, or several inputs with --out-dir")
    return [(args.paths[0], args.paths[1])]


def _load(args) -> TeluCodec:
    if args.threads:
        torch.set_num_threads(args.threads)
    return TeluCodec.load(args.model, args.device, args.block_seconds, args.batch_windows,
                          args.precision, args.compile)  # fmt: skip


def _planned(fn):
    """Run a call that plans outputs from the arguments: its ValueError (two inputs, one
    output; a bitrate the model lacks) is the user's, an OSError (a read-only --out-dir) the
    environment's."""
    try:
        return fn()
    except ArgumentError:
        raise
    except ValueError as e:
        raise ArgumentError(str(e)) from e
    except OSError as e:
        raise environment_fault(e, e.filename, "creating the output") from e


def _report(prog: str, results, line) -> int:
    """Print one line per result; 2 if any failed."""
    failed = 0
    for r in results:
        if r.error is not None:
            failed += 1
            print(f"{prog}: {r.error}", file=sys.stderr)
        else:
            print(line(r), flush=True)
    return 2 if failed else 0


def encode_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="telucodec-encode", description="audio files -> .tcc codes")
    _common(p, "audio file(s) (wav, flac, ogg, mp3; any rate/channels/level), then .tcc")
    p.add_argument("--n-q", type=int, default=None, help="codebooks (default: model's default)")
    p.add_argument("--kbps", type=float, default=None, help="bitrate instead of --n-q")
    args = p.parse_args(argv)
    jobs = _jobs(p, args)
    return run_cli("telucodec-encode", lambda: _encode(args, jobs))


def _encode(args, jobs) -> int:
    t0 = time.perf_counter()
    tc = _load(args)
    n_q = _planned(lambda: tc.n_q_for_kbps(args.kbps)) if args.kbps is not None else args.n_q
    if jobs is None:
        results = _planned(lambda: tc.encode_files(args.paths, args.out_dir, n_q))
    else:
        results = [_one(lambda: tc.encode_file(jobs[0][0], jobs[0][1], n_q), jobs[0])]

    def line(r) -> str:
        cf = r.code
        secs = time.perf_counter() - t0
        return (f"{r.output}: {cf.duration_s:.2f} s, {cf.n_q} codebooks = "
                f"{tc.bitrate_kbps(cf.n_q):g} kbps, {cf.payload_bytes() + HEADER_BYTES} bytes, "
                f"input {cf.loudness_lufs:.1f} LUFS, gain {cf.gain_db:+.2f} dB "
                f"({secs:.1f} s elapsed)")  # fmt: skip

    return _report("telucodec-encode", results, line)


def decode_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="telucodec-decode", description=".tcc codes -> audio files")
    _common(p, "code file(s) (.tcc), then the audio file (.wav = 32-bit float, .flac = 24-bit)")
    p.add_argument("--n-q", type=int, default=None, help="decode only the first N codebooks")
    p.add_argument("--rate", default="input",
                   help="input (the encoded file's rate and length, default), model, or Hz")  # fmt: skip
    p.add_argument("--format", choices=("wav", "flac"), default="wav",
                   help="output format with --out-dir")  # fmt: skip
    args = p.parse_args(argv)
    jobs = _jobs(p, args)
    rate = args.rate if args.rate in RATES else _hz(p, args.rate)
    return run_cli("telucodec-decode", lambda: _decode(args, jobs, rate))


def _decode(args, jobs, rate) -> int:
    t0 = time.perf_counter()
    tc = _load(args)
    if jobs is None:
        results = _planned(
            lambda: tc.decode_files(args.paths, args.out_dir, args.n_q, rate, "." + args.format)
        )
    else:
        results = [_one(lambda: tc.decode_file(*jobs[0], args.n_q, rate=rate), jobs[0])]

    def line(r) -> str:
        secs = time.perf_counter() - t0
        return (f"{r.output}: {r.code.duration_s:.2f} s at {tc.output_rate(r.code, rate)} Hz "
                f"({secs:.1f} s elapsed)")  # fmt: skip

    return _report("telucodec-decode", results, line)


def _hz(p: argparse.ArgumentParser, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        p.error(f"--rate: expected input, model or a number of Hz, got {text!r}")
        raise  # unreachable: p.error exits


def _one(fn, job):
    """A single-file call as a result, its error caught (the CLI reports it)."""
    try:
        return FileResult(job[0], job[1], fn())
    except ERRORS as e:
        return FileResult(job[0], job[1], error=e)


def main(argv: list[str] | None = None) -> int:
    """``python -m infer.cli encode|decode ...`` (until the console scripts are installed)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("encode", "decode"):
        print("usage: python -m infer.cli {encode,decode} ...", file=sys.stderr)
        return 2
    return (encode_main if argv[0] == "encode" else decode_main)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
