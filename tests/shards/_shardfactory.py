"""Tiny shard sets in the documented format, written with webdataset's TarWriter.

Independent of ``shards.prep`` on purpose: the reader's tests must pin the format, not
whatever the writer happens to do. Each chunk is a tone whose frequency depends on its key
plus a little noise, so chunks are distinguishable and FLAC has real work to do.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import webdataset as wds

from shards.manifest import Manifest, ShardInfo, SplitInfo


def chunk_audio(key: str, frames: int, sample_rate: int) -> np.ndarray:
    """Deterministic test audio for ``key``: float32 [frames] in about [-0.3, 0.3]."""
    seed = sum(ord(ch) * (i + 1) for i, ch in enumerate(key))
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / sample_rate
    freq = 100.0 + seed % 1500
    x = 0.25 * np.sin(2 * np.pi * freq * t) + 0.03 * rng.standard_normal(frames)
    return x.astype(np.float32)


def flac_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="FLAC", subtype="PCM_24")
    return buf.getvalue()


def write_tar(path: Path, samples: list[tuple[str, bytes, dict]]) -> None:
    with wds.TarWriter(str(path)) as sink:
        for key, flac, meta in samples:
            sink.write({"__key__": key, "flac": flac, "json": json.dumps(meta).encode()})


def chunk_frames(index: int, chunk: int, short: int) -> int:
    """Every 4th chunk is a short 'last chunk of a recording' of ``short`` samples."""
    return short if index % 4 == 3 else chunk


def make_shard_set(
    folder: Path,
    train: list[int],
    val: tuple[int, ...] | list[int] = (2, 3),
    *,
    sample_rate: int = 8000,
    chunk_seconds: float = 0.5,
    short_seconds: float = 0.2,
    flac_rate: dict[str, int] | None = None,
) -> Manifest:
    """Write ``train-%06d.tar`` / ``val-%06d.tar`` with the given sample counts and a manifest.

    flac_rate: ``{key: rate}`` stores those chunks at another rate (to test the check).
    Returns the saved manifest. Keys are ``<split>s<shard>-c<index:05d>``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    chunk = round(chunk_seconds * sample_rate)
    short = round(short_seconds * sample_rate)
    splits = {}
    for split, counts in (("train", train), ("val", val)):
        infos = []
        for shard, count in enumerate(counts):
            samples, seconds = [], 0.0
            for index in range(count):
                key = f"{split}s{shard}-c{index:05d}"
                frames = chunk_frames(index, chunk, short)
                rate = (flac_rate or {}).get(key, sample_rate)
                audio = chunk_audio(key, frames, sample_rate)
                meta = {"source": f"{split}{shard}.wav", "start_s": index * chunk_seconds}
                samples.append((key, flac_bytes(audio, rate), meta))
                seconds += frames / sample_rate
            name = f"{split}-{shard:06d}.tar"
            write_tar(folder / name, samples)
            infos.append(ShardInfo(name, count, round(seconds, 6)))
        splits[split] = SplitInfo(infos)
    manifest = Manifest(
        sample_rate=sample_rate,
        loudness_target_lufs=-23.0,
        peak_ceiling_dbfs=-1.0,
        chunk_seconds=chunk_seconds,
        splits=splits,
    )
    manifest.save(folder)
    return manifest


def expected_chunk(
    key: str, sample_rate: int = 8000, chunk_seconds: float = 0.5, short_seconds: float = 0.2
) -> np.ndarray:
    """The audio the factory stored for ``key``, as 24-bit FLAC returns it."""
    index = int(key.rsplit("-c", 1)[1])
    frames = chunk_frames(
        index, round(chunk_seconds * sample_rate), round(short_seconds * sample_rate)
    )
    audio = chunk_audio(key, frames, sample_rate)
    return sf.read(io.BytesIO(flac_bytes(audio, sample_rate)), dtype="float32")[0]
