"""Python API: load an exported model, encode audio to codes, decode codes to audio.

    >>> tc = TeluCodec.load("runs/telugu16k/export")
    >>> cf = tc.encode(waveform, sample_rate=44100)     # any rate, channels, level
    >>> audio = tc.decode(cf)                            # mono float32 at tc.sample_rate
    >>> tc.encode_file("talk.flac", "talk.tcc"); tc.decode_file("talk.tcc", "talk.wav")

Input is conditioned by :mod:`shards.audio` (downmix, DC removal, soxr resampling) and
levelled by :mod:`infer.level` (the prep loudness target recorded in the export), i.e.
exactly as the training data was; decoding divides the gain out again, so the output has the
input's loudness. Long inputs go through :mod:`infer.blocks` (bounded memory, no seams);
files are streamed (two passes over the input: measure the loudness, then encode).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from codec.config import CodecConfig
from infer import blocks as blk
from infer.codefile import CodeFile, CodeFileError
from infer.level import LevelPlan, LoudnessMeter, plan_for_array, plan_gain
from shards import audio
from shards.loudness import db_to_gain
from trainer.export import load_exported


def strip_weight_norm(module: nn.Module) -> int:
    """Fold every weight-norm parametrisation into a plain weight (inference speed-up: the
    weight is no longer recomputed from (g, v) on every forward). Returns how many."""
    from torch.nn.utils import parametrize

    n = 0
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            n += 1
    return n


class TeluCodec:
    """An exported codec ready for inference (eval mode, weight norm folded, no grad)."""

    def __init__(self, codec: nn.Module, meta: dict, block_seconds: float):
        self.codec = codec
        self.meta = meta
        self.config = CodecConfig(**meta["codec"])
        self.model_id: str = meta["model_id"]
        self.sample_rate: int = int(meta["sample_rate"])
        self.loudness_target_lufs: float = float(meta["loudness_target_lufs"])
        self.peak_ceiling_dbfs: float = float(meta["peak_ceiling_dbfs"])
        self.codebook_size: int = int(meta["codec"]["codebook_size"])
        self.n_codebooks: int = codec.n_codebooks
        self.hop: int = codec.hop_length
        self.block_frames = max(1, round(block_seconds * self.sample_rate / self.hop))
        self.enc_context, self.dec_context = blk.context_frames(codec)
        default = meta["codec"].get("default_n_quantizers")
        self.default_n_quantizers: int = int(default or self.n_codebooks)

    @classmethod
    def load(
        cls,
        export_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        block_seconds: float = blk.DEFAULT_BLOCK_SECONDS,
    ) -> TeluCodec:
        """Load ``model.safetensors`` + ``codec.json`` (safetensors only: no pickle)."""
        codec, meta = load_exported(export_dir, device=device)
        strip_weight_norm(codec)
        codec.requires_grad_(False)
        return cls(codec, meta, block_seconds)

    @property
    def device(self) -> torch.device:
        return next(self.codec.parameters()).device

    def bitrate_kbps(self, n_q: int) -> float:
        """Nominal kbps with ``n_q`` codebooks (:meth:`codec.config.CodecConfig.bitrate_kbps`)."""
        return self.config.bitrate_kbps(n_q)

    def n_q_for_kbps(self, kbps: float) -> int:
        """Most codebooks within ``kbps``; ValueError outside the model's range."""
        return self.config.n_quantizers_for_kbps(kbps)

    def _n_q(self, n_quantizers: int | None) -> int:
        n = self.default_n_quantizers if n_quantizers is None else int(n_quantizers)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(f"n_quantizers: must be in 1..{self.n_codebooks}, got {n}")
        return n

    # ---- arrays -------------------------------------------------------------------

    def condition(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono float32 at the model rate, converted exactly as prep converts files.

        waveform: ``(frames,)`` or ``(frames, channels)`` float (full scale 1.0) or int PCM.
        """
        cond = audio.Conditioner(sample_rate, self.sample_rate)
        x = np.concatenate([cond.process(np.asarray(waveform)), cond.flush()])
        if not np.isfinite(x).all():
            raise ValueError("waveform: contains NaN or Inf samples")
        return x

    def level(self, x: np.ndarray) -> LevelPlan:
        """The gain that brings conditioned ``x`` to the training level (prep's rule)."""
        return plan_for_array(x, self.sample_rate, self.loudness_target_lufs,
                              self.peak_ceiling_dbfs)  # fmt: skip

    def encode(
        self, waveform: np.ndarray, sample_rate: int, n_quantizers: int | None = None
    ) -> CodeFile:
        """Codes of ``waveform`` (any rate/channels/level) with what decoding needs."""
        n_q = self._n_q(n_quantizers)
        x = self.condition(waveform, sample_rate)
        plan = self.level(x)
        codes = self._encode_blocks([x], n_q, plan.gain)
        return self._codefile(codes, len(x), int(sample_rate), plan)

    def decode(self, code: CodeFile, n_quantizers: int | None = None) -> np.ndarray:
        """Mono float32 ``(n_samples,)`` at :attr:`sample_rate`, at the input's loudness.
        ``n_quantizers``: decode only the first n codebooks (default: all stored)."""
        return np.concatenate(list(self.decode_blocks(code, n_quantizers)))

    def decode_blocks(
        self, code: CodeFile, n_quantizers: int | None = None
    ) -> Iterator[np.ndarray]:
        """:meth:`decode` block by block (bounded memory for hours-long files)."""
        code.check_model(self.model_id)
        if code.sample_rate != self.sample_rate:
            raise CodeFileError(f"code file: rate {code.sample_rate} != model {self.sample_rate}")
        codes = code.codes
        if n_quantizers is not None:
            if not 1 <= n_quantizers <= code.n_q:
                raise ValueError(f"n_quantizers: file holds {code.n_q}, got {n_quantizers}")
            codes = codes[:n_quantizers]
        inv = np.float32(1.0 / db_to_gain(code.gain_db))  # the inverse of the encode gain
        left = code.n_samples
        for y in blk.decode_stream(self.codec, codes, self.block_frames, self.dec_context):
            y = y[:left] * inv
            left -= len(y)
            if len(y):
                yield y

    # ---- files --------------------------------------------------------------------

    def encode_file(
        self,
        path: str | os.PathLike,
        out_path: str | os.PathLike | None = None,
        n_quantizers: int | None = None,
    ) -> CodeFile:
        """Stream ``path`` (any supported format) into a :class:`CodeFile`; save it to
        ``out_path`` when given. Memory does not grow with the file's length beyond its
        codes. Raises :class:`shards.audio.AudioError` naming a bad input file."""
        n_q = self._n_q(n_quantizers)
        info = audio.probe(path)
        meter = LoudnessMeter(self.sample_rate)
        for b in audio.prefetched(audio.stream_conditioned(path, self.sample_rate, info=info)):
            meter.push(b)
        plan = plan_gain(meter.powers(), meter.peak, self.loudness_target_lufs,
                         self.peak_ceiling_dbfs)  # fmt: skip
        stream = audio.prefetched(audio.stream_conditioned(path, self.sample_rate, info=info))
        codes = self._encode_blocks(stream, n_q, plan.gain)
        cf = self._codefile(codes, meter.samples, info.sample_rate, plan)
        if out_path is not None:
            cf.save(out_path)
        return cf

    def decode_file(
        self,
        code_path: str | os.PathLike,
        out_path: str | os.PathLike,
        n_quantizers: int | None = None,
        subtype: str | None = None,
    ) -> CodeFile:
        """Decode a ``.tcc`` file into an audio file, streaming. ``subtype``: soundfile
        subtype (default FLOAT for WAV, so restored peaks above full scale survive;
        PCM_24 for FLAC, which clips them, with a warning)."""
        code = CodeFile.load(code_path)
        code.check_model(self.model_id, str(code_path))
        out = Path(out_path)
        if subtype is None:
            subtype = "PCM_24" if out.suffix.lower() == ".flac" else "FLOAT"
        peak = 0.0
        tmp = out.with_name(out.name + ".part")
        fmt = out.suffix.lstrip(".").upper() or "WAV"
        with sf.SoundFile(tmp, "w", self.sample_rate, 1, subtype=subtype, format=fmt) as f:
            for y in self.decode_blocks(code, n_quantizers):
                peak = max(peak, float(np.abs(y).max()))
                f.write(y)
        os.replace(tmp, out)
        if peak > 1.0 and not subtype.startswith(("FLOAT", "DOUBLE")):
            warnings.warn(
                f"{out}: peak {peak:.4f} exceeds full scale and was clipped by {subtype}; "
                "write a .wav (32-bit float) to keep it",
                stacklevel=2,
            )
        return code

    # ---- internals ----------------------------------------------------------------

    def _encode_blocks(self, stream, n_q: int, gain: np.float32) -> np.ndarray:
        parts = list(
            blk.encode_stream(
                self.codec, stream, n_q, self.block_frames, self.enc_context, gain=gain
            )
        )
        if not parts:
            raise ValueError("waveform: no samples to encode")
        return np.concatenate(parts, axis=1)

    def _codefile(
        self, codes: np.ndarray, n_samples: int, orig_rate: int, plan: LevelPlan
    ) -> CodeFile:
        return CodeFile(
            model_id=self.model_id,
            sample_rate=self.sample_rate,
            orig_rate=orig_rate,
            codebook_size=self.codebook_size,
            n_samples=n_samples,
            gain_db=plan.gain_db,
            loudness_lufs=plan.loudness_lufs,
            codes=codes.astype(np.int64),
        )
