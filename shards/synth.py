"""Generated speech-like audio: test factories, the ``make demo`` corpus, benchmark input.

Not speech, but shaped like it where prep cares: a glottal pulse train with a wandering
pitch (90-220 Hz) through three formant resonators whose balance changes per syllable,
noisy "fricatives", a 3-6 Hz syllable envelope, pauses with a faint noise floor. That
gives BS.1770 gating, the peak-to-loudness ratio (~15-20 dB) and FLAC compression
something realistic to chew on, with no downloaded data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf


def _smooth_noise(rng: np.random.Generator, n: int, rate: int, hz: float) -> np.ndarray:
    """Random curve in [-1, 1] varying at about ``hz`` (interpolated control points)."""
    points = max(2, int(n / rate * hz) + 2)
    ctrl = rng.uniform(-1, 1, points)
    return np.interp(np.arange(n), np.linspace(0, n - 1, points), ctrl)


def _resonator(freq: float, bandwidth: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.exp(-np.pi * bandwidth / rate)
    theta = 2 * np.pi * freq / rate
    return np.array([1 - r]), np.array([1.0, -2 * r * np.cos(theta), r * r])


def speech_like(
    seconds: float,
    rate: int,
    *,
    seed: int = 0,
    peak: float = 0.5,
    pause_share: float = 0.2,
) -> np.ndarray:
    """Mono float32 (samples,) of speech-like sound, scaled so max |x| == ``peak``."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * rate)))
    f0 = 155 + 65 * _smooth_noise(rng, n, rate, 2.0)
    phase = np.cumsum(f0 / rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    # A one-pole low-pass turns the impulses into a glottal-ish (-12 dB/oct) source.
    source = scipy.signal.lfilter([1.0], [1.0, -0.97], pulses)
    # The positive pulses carry a DC component (about 0.4x the RMS) that recorded speech
    # never has: a microphone does not pass it and prep's high-pass strips it. Left in, it
    # is "signal" that every zero-mean measure (SI-SNR, audit's DC check) disagrees about.
    # A high-pass below the lowest pitch (90 Hz) removes it and the slow drift that the
    # wandering pulse rate adds, leaving the harmonics as they were.
    source = scipy.signal.sosfilt(
        scipy.signal.butter(2, 50.0, "highpass", fs=rate, output="sos"), source
    )
    voiced = np.zeros(n)
    for k, (freq, bw) in enumerate([(600, 90), (1400, 120), (2600, 180)]):
        freq = min(freq, 0.4 * rate)
        b, a = _resonator(freq, bw, rate)
        weight = 0.6 + 0.4 * _smooth_noise(rng, n, rate, 4.0 + k)
        voiced += weight * scipy.signal.lfilter(b, a, source) * (1.0 / (k + 1))
    voiced /= np.max(np.abs(voiced)) + 1e-12
    hp_hz = min(3000.0, 0.35 * rate)
    fric = scipy.signal.lfilter(
        *scipy.signal.butter(2, hp_hz, "highpass", fs=rate), rng.normal(0, 1, n)
    )
    fric /= np.max(np.abs(fric)) + 1e-12
    # Syllables: raised-cosine bumps at 3-6 Hz; some are fricative rather than voiced.
    syll = 0.5 - 0.5 * np.cos(
        2 * np.pi * np.cumsum(4.5 + 1.5 * _smooth_noise(rng, n, rate, 1.0)) / rate
    )
    fric_mask = _smooth_noise(rng, n, rate, 3.0) > 0.6
    x = syll * np.where(fric_mask, 0.35 * fric, voiced)
    # Pauses: a slow gate that closes for about ``pause_share`` of the time.
    if pause_share > 0:
        gate = _smooth_noise(rng, n, rate, 0.7) > (2 * pause_share - 1)
        gate = scipy.signal.lfilter([0.002], [1, -0.998], gate.astype(float))
        gate /= max(gate.max(), 1e-12)
        x *= np.clip(gate, 0, 1)
    x += rng.normal(0, 1e-3, n)  # room noise, ~-60 dBFS
    x *= peak / (np.max(np.abs(x)) + 1e-12)
    return x.astype(np.float32)


def sine(seconds: float, rate: int, freq: float = 440.0, peak: float = 0.5) -> np.ndarray:
    """Mono float32 sine with max |x| == ``peak`` (to within sampling)."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (peak * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: str | os.PathLike, x: np.ndarray, rate: int, subtype: str | None = None) -> Path:
    """Write (samples,) or (samples, channels) to ``path`` (format from the extension)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(p), x, rate, subtype=subtype)
    return p


def multichannel(x: np.ndarray, channels: int, seed: int = 0) -> np.ndarray:
    """(samples,) -> (samples, channels): the same source at different gains and delays,
    like several microphones in one room."""
    rng = np.random.default_rng(seed)
    cols = []
    for c in range(channels):
        delay = int(rng.integers(0, 24)) if c else 0
        cols.append(np.roll(x, delay) * (1.0 - 0.1 * c))
    return np.stack(cols, axis=1).astype(np.float32)


def make_demo_corpus(folder: str | os.PathLike, seed: int = 0) -> list[Path]:
    """A small corpus showing what prep copes with (about 3 minutes of audio).

    Varied rates (8 k - 96 k), channel counts (1, 2, 6), sample formats (16/24-bit, float,
    Ogg Vorbis), levels (35 dB apart), a DC offset, a source peaking at 1.0129, one silent
    file and one corrupt file. File names carry a speaker field (``SPKF01``) as in the
    Telugu corpus.
    """
    d = Path(folder)
    files = [
        write(
            d / "SPKF01_interview_48k_stereo.wav",
            multichannel(speech_like(45, 48_000, seed=seed, peak=0.6), 2, seed),
            48_000,
            "PCM_16",
        ),
        write(
            d / "SPKM02_reading_44k_quiet.flac",
            speech_like(30, 44_100, seed=seed + 1, peak=0.04),
            44_100,
            "PCM_24",
        ),
        write(
            d / "SPKF03_phone_8k.wav",
            speech_like(20, 8_000, seed=seed + 2, peak=0.7),
            8_000,
            "PCM_16",
        ),
        write(
            d / "SPKM04_studio_96k_6ch_dc.wav",
            multichannel(speech_like(12, 96_000, seed=seed + 3, peak=0.3), 6, seed) + 0.2,
            96_000,
            "FLOAT",
        ),
        write(
            d / "SPKF05_overs_22k_float.wav",
            speech_like(25, 22_050, seed=seed + 4, peak=1.0129),
            22_050,
            "FLOAT",
        ),
        write(
            d / "SPKM06_podcast_32k.ogg",
            speech_like(25, 32_000, seed=seed + 5, peak=0.5),
            32_000,
            "VORBIS",
        ),
        write(d / "SPKF07_silence.wav", np.zeros(16_000 * 5, np.float32), 16_000, "PCM_16"),
    ]
    broken = d / "SPKM08_corrupt.wav"
    broken.write_bytes(np.random.default_rng(seed).bytes(20_000))
    files.append(broken)
    return files


def write_long_wav(
    path: str | os.PathLike,
    hours: float,
    rate: int = 48_000,
    channels: int = 2,
    *,
    seed: int = 0,
    block_seconds: float = 30.0,
    pool: np.ndarray | None = None,
) -> Path:
    """Write a long 16-bit WAV block by block (memory stays at one block + the pool).

    The audio cycles through ``pool`` (mono at ``rate``; default a 60 s speech-like signal,
    e.g. real held-out speech for a trained model) with a different offset and gain per
    block, so levels vary over time the way a long recording's do.
    """
    rng = np.random.default_rng(seed)
    if pool is None:
        pool = speech_like(60, rate, seed=seed, peak=0.5)
    total = int(round(hours * 3600 * rate))
    block = int(block_seconds * rate)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(p), "w", rate, channels, subtype="PCM_16", format="WAV") as f:
        done = 0
        while done < total:
            n = min(block, total - done)
            start = int(rng.integers(0, len(pool)))
            idx = (start + np.arange(n)) % len(pool)
            mono = pool[idx] * rng.uniform(0.3, 1.2)
            f.write(multichannel(mono, channels, seed) if channels > 1 else mono)
            done += n
    return p
