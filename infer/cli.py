"""Commands: ``telucodec-encode IN OUT.tcc`` and ``telucodec-decode IN.tcc OUT.wav``.

Thin wrappers around :class:`infer.api.TeluCodec`; bad input files, code files from
another model, truncated or wrong-version code files exit with status 2 and one line
naming the file and the reason.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from infer.api import TeluCodec
from infer.blocks import DEFAULT_BLOCK_SECONDS
from infer.codefile import HEADER_BYTES, CodeFileError
from shards.audio import AudioError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="export folder (model.safetensors + codec.json)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--block-seconds",
        type=float,
        default=DEFAULT_BLOCK_SECONDS,
        help="audio per processing window (memory vs. overhead; results do not depend on it)",
    )


def encode_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="telucodec-encode", description="audio file -> .tcc codes")
    p.add_argument("input", help="audio file (wav, flac, ogg, mp3; any rate/channels/level)")
    p.add_argument("output", help="code file to write (.tcc)")
    _common(p)
    p.add_argument("--n-q", type=int, default=None, help="codebooks (default: model's default)")
    p.add_argument("--kbps", type=float, default=None, help="bitrate instead of --n-q")
    args = p.parse_args(argv)
    try:
        tc = TeluCodec.load(args.model, args.device, args.block_seconds)
        n_q = args.n_q
        if args.kbps is not None:
            n_q = tc.n_q_for_kbps(args.kbps)
        t0 = time.perf_counter()
        cf = tc.encode_file(args.input, args.output, n_q)
    except (AudioError, CodeFileError, FileNotFoundError, ValueError) as e:
        print(f"telucodec-encode: {e}", file=sys.stderr)
        return 2
    secs = time.perf_counter() - t0
    print(
        f"{args.output}: {cf.duration_s:.2f} s, {cf.n_q} codebooks = "
        f"{tc.bitrate_kbps(cf.n_q):g} kbps, {cf.payload_bytes() + HEADER_BYTES} bytes, "
        f"input {cf.loudness_lufs:.1f} LUFS, gain {cf.gain_db:+.2f} dB, "
        f"{cf.duration_s / secs:.1f}x real time"
    )
    return 0


def decode_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="telucodec-decode", description=".tcc codes -> audio file")
    p.add_argument("input", help="code file (.tcc)")
    p.add_argument("output", help="audio file to write (.wav = 32-bit float, .flac = 24-bit)")
    _common(p)
    p.add_argument("--n-q", type=int, default=None, help="decode only the first N codebooks")
    args = p.parse_args(argv)
    try:
        tc = TeluCodec.load(args.model, args.device, args.block_seconds)
        t0 = time.perf_counter()
        cf = tc.decode_file(args.input, args.output, args.n_q)
    except (CodeFileError, FileNotFoundError, ValueError) as e:
        print(f"telucodec-decode: {e}", file=sys.stderr)
        return 2
    secs = time.perf_counter() - t0
    print(f"{args.output}: {cf.duration_s:.2f} s at {tc.sample_rate} Hz, "
          f"{cf.duration_s / secs:.1f}x real time")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m infer.cli encode|decode ...`` (until the console scripts are installed)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("encode", "decode"):
        print("usage: python -m infer.cli {encode,decode} ...", file=sys.stderr)
        return 2
    return (encode_main if argv[0] == "encode" else decode_main)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
