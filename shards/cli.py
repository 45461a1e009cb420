"""``telucodec-prep``: recordings -> loudness-normalised WebDataset shards.

A thin wrapper: parse arguments into a :class:`shards.prep.PrepConfig` and call
:func:`shards.prep.prep_corpus`. Exit status 0 when shards were written (rejected files are
reported, not fatal), 1 when nothing usable was found, 2 for bad arguments and when the
machine refused a write (full disk, read-only folder: one line naming the path).
"""

from __future__ import annotations

import argparse
import logging
import sys

from tqdm.contrib.logging import logging_redirect_tqdm

from shards.prep import DEFAULT_SPEAKER_REGEX, PrepConfig, PrepError, prep_corpus
from shards.split import SPLIT_MODES, SplitConfig
from telucodec.errors import EnvironmentFault


def build_parser() -> argparse.ArgumentParser:
    d = PrepConfig()
    s = SplitConfig()
    p = argparse.ArgumentParser(
        prog="telucodec-prep",
        description="Convert recordings (WAV/FLAC/OGG/MP3, any rate and channel count) into "
        "mono, loudness-normalised WebDataset shards with a manifest and a report.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="folders (searched recursively), audio files "
        "or list files (.txt/.lst: one path per line)",
    )
    p.add_argument("--out", required=True, help="output folder for shards, manifest, report")
    p.add_argument("--rate", type=int, default=d.target_rate, help="target sample rate, Hz")
    p.add_argument("--chunk-seconds", type=float, default=d.chunk_seconds)
    p.add_argument(
        "--min-chunk-seconds",
        type=float,
        default=d.min_chunk_seconds,
        help="keep a recording's last partial chunk if at least this long",
    )
    p.add_argument(
        "--target-lufs",
        type=float,
        default=d.loudness_target_lufs,
        help="BS.1770 loudness of every kept chunk, LUFS",
    )
    p.add_argument(
        "--ceiling-dbfs",
        type=float,
        default=d.peak_ceiling_dbfs,
        help="peak guard ceiling (sample peak), dBFS",
    )
    p.add_argument(
        "--silence-floor-lufs",
        type=float,
        default=d.silence_floor_lufs,
        help="chunks quieter than this are dropped as silence, LUFS",
    )
    p.add_argument(
        "--split",
        choices=SPLIT_MODES,
        default=s.mode,
        help="file: whole recordings by hash; list: --val-list; time: last "
        "--val-seconds of every recording",
    )
    p.add_argument("--val-fraction", type=float, default=s.val_fraction)
    p.add_argument(
        "--group-regex",
        default=None,
        help="keep recordings whose paths share this match on one side, "
        r"e.g. 'SPK[FM]\d+'",
    )
    p.add_argument("--val-list", default=None, help="file of relative paths / group keys for val")
    p.add_argument("--val-seconds", type=float, default=s.val_seconds)
    p.add_argument("--gap-seconds", type=float, default=s.gap_seconds)
    p.add_argument(
        "--speaker-regex",
        default=DEFAULT_SPEAKER_REGEX,
        help="recorded as 'speaker' in chunk metadata when it matches ('' = off)",
    )
    p.add_argument("--max-shard-samples", type=int, default=d.max_shard_samples)
    p.add_argument("--max-shard-mb", type=float, default=d.max_shard_bytes / 2**20)
    p.add_argument(
        "--flac-bits",
        type=int,
        choices=(16, 24),
        default=d.flac_bits,
        help="PCM depth of the stored FLAC (16: half the size)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="rebuild an existing output folder (only prep's own files are removed)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also log files dropped as too short"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="telucodec-prep: %(message)s",
    )
    try:
        config = PrepConfig(
            target_rate=args.rate,
            chunk_seconds=args.chunk_seconds,
            min_chunk_seconds=args.min_chunk_seconds,
            loudness_target_lufs=args.target_lufs,
            peak_ceiling_dbfs=args.ceiling_dbfs,
            silence_floor_lufs=args.silence_floor_lufs,
            split=SplitConfig(
                mode=args.split,
                val_fraction=args.val_fraction,
                group_regex=args.group_regex,
                val_list=args.val_list,
                val_seconds=args.val_seconds,
                gap_seconds=args.gap_seconds,
            ),
            speaker_regex=args.speaker_regex or None,
            max_shard_samples=args.max_shard_samples,
            max_shard_bytes=int(args.max_shard_mb * 2**20),
            workers=args.workers,
            flac_bits=args.flac_bits,
            overwrite=args.overwrite,
        )
    except ValueError as e:
        print(f"telucodec-prep: error: {e}", file=sys.stderr)
        return 2
    try:
        with logging_redirect_tqdm():  # log lines print above the progress bar, not into it
            result = prep_corpus(args.inputs, args.out, config, progress=not args.quiet)
    except PrepError as e:
        print(f"telucodec-prep: error: {e}", file=sys.stderr)
        return 1
    except EnvironmentFault as e:  # full disk, read-only --out: the run stopped, no manifest
        print(f"telucodec-prep: error: {e}", file=sys.stderr)
        return 2
    print(result.summary)
    m = result.manifest
    print(
        f"wrote {sum(len(s.shards) for s in m.splits.values())} shards, manifest and report "
        f"to {result.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
