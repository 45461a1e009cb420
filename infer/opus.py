"""Opus reference: round-trip a signal through ``opusenc``/``opusdec`` at a given bitrate.

The clip is handed to opusenc as 32-bit float WAV at the codec's rate (the very samples the
codec is scored on, at the same level) and decoded back at that rate. opusdec already
removes the encoder's pre-skip; :func:`align` then checks the lag by cross-correlation and
removes any that is left (e.g. resampler delay), so Opus is not penalised for latency.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

OPUS_KBPS = (6.0, 8.0, 12.0, 16.0, 24.0)
MAX_LAG_SECONDS = 0.05


def available() -> bool:
    return shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


def align(ref: np.ndarray, est: np.ndarray, max_lag: int) -> tuple[np.ndarray, int]:
    """Shift ``est`` so it best matches ``ref`` (cross-correlation peak within ``max_lag``
    samples), zero-padded/cropped to ``len(ref)``. Returns (aligned, lag); a positive lag
    means ``est`` was late by ``lag`` samples."""
    n = len(ref) + len(est)
    size = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(est, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    lag = int(lags[np.argmax(xc[lags])])
    out = np.zeros(len(ref), np.float32)
    if lag >= 0:
        seg = est[lag : lag + len(ref)]
        out[: len(seg)] = seg
    else:
        seg = est[: len(ref) + lag]
        out[-lag : -lag + len(seg)] = seg
    return out, lag


def roundtrip(x: np.ndarray, rate: int, kbps: float) -> tuple[np.ndarray, dict]:
    """``x`` (mono float32) through Opus at ``kbps`` -> (decoded, aligned to ``x``; info).

    info: ``kbps`` (asked), ``actual_kbps`` (Ogg file size x 8 / duration, container
    overhead included), ``lag`` (samples removed by :func:`align`).
    Raises RuntimeError naming the tool when opusenc/opusdec fail.
    """
    with tempfile.TemporaryDirectory(prefix="telucodec-opus-") as tmp:
        src, enc, dec = Path(tmp, "in.wav"), Path(tmp, "x.opus"), Path(tmp, "out.wav")
        sf.write(src, np.asarray(x, np.float32), rate, subtype="FLOAT")
        for cmd in (
            ["opusenc", "--quiet", "--bitrate", f"{kbps:g}", str(src), str(enc)],
            ["opusdec", "--quiet", "--float", "--rate", str(rate), str(enc), str(dec)],
        ):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr.strip()}")
        y, sr = sf.read(dec, dtype="float32", always_2d=True)
        if sr != rate:
            raise RuntimeError(f"opusdec wrote {sr} Hz, asked for {rate} Hz")
        actual = enc.stat().st_size * 8 / (len(x) / rate) / 1000
    y, lag = align(np.asarray(x, np.float32), y[:, 0], round(MAX_LAG_SECONDS * rate))
    return y, {"kbps": float(kbps), "actual_kbps": actual, "lag": lag}
