"""Python API: load an exported model, encode audio to codes, decode codes to audio.

    >>> tc = TeluCodec.load("runs/telugu16k/export")    # cuda when there is one
    >>> cf = tc.encode(waveform, sample_rate=44100)     # any rate, channels, level
    >>> audio = tc.decode(cf)                            # mono float32 at 44100 Hz, same length
    >>> tc.encode_file("talk.flac", "talk.tcc"); tc.decode_file("talk.tcc", "talk.wav")
    >>> for r in tc.encode_files(paths, "codes/"): print(r)   # many files, batched windows

Input is conditioned by :mod:`shards.audio` (downmix, DC removal, soxr resampling) and
levelled by :mod:`infer.level` (the prep loudness target recorded in the export), i.e.
exactly as the training data was; decoding divides the gain out again and resamples to the
input's rate (:mod:`infer.restore`), so the output has the input's loudness, rate and
length. Long inputs are cut into overlapping windows (:mod:`infer.blocks`) that run
``batch_windows`` at a time (:mod:`infer.batch`): bounded memory, no seams, and a full GPU.
Files are streamed (two passes over an input: measure the loudness, then encode).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from codec.config import CodecConfig
from codec.export_format import load_exported
from infer import batch, fast
from infer import blocks as blk
from infer.codefile import CodeFile, CodeFileError, bits_for
from infer.files import FileResult, decode_jobs, encode_jobs, plan_outputs
from infer.level import LevelPlan, plan_for_array
from infer.restore import Restorer
from shards import audio
from telucodec.errors import ArgumentError

# Windows per forward pass. CPU: 1 (batching does not speed up a CPU that one window
# already keeps busy, and multiplies memory; see BENCHMARKS.md). GPU: 16 five-second
# windows (80 s of audio) per pass.
DEFAULT_BATCH_WINDOWS = {"cpu": 1, "cuda": 16}
RATES = ("input", "model")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: cuda when available, else cpu; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class TeluCodec:
    """An exported codec ready for inference (eval mode, weight norm folded, no grad)."""

    def __init__(
        self,
        codec: nn.Module,
        meta: dict,
        block_seconds: float = blk.DEFAULT_BLOCK_SECONDS,
        batch_windows: int = 1,
    ):
        if not block_seconds > 0:
            raise ValueError(f"block_seconds: must be > 0, got {block_seconds}")
        if batch_windows < 1:
            raise ValueError(f"batch_windows: must be >= 1, got {batch_windows}")
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
        self.tail: int = codec.tail  # the decoder's shortfall: F frames decode to F*hop - tail
        self.block_frames = max(1, round(block_seconds * self.sample_rate / self.hop))
        self.batch_windows = int(batch_windows)
        self.enc_context, self.dec_context = blk.context_frames(codec)
        default = meta["codec"].get("default_n_quantizers")
        self.default_n_quantizers: int = int(default or self.n_codebooks)

    @classmethod
    def load(
        cls,
        export_dir: str | os.PathLike,
        device: str | torch.device = "auto",
        block_seconds: float = blk.DEFAULT_BLOCK_SECONDS,
        batch_windows: int | None = None,
        precision: fast.Precision = "fp32",
        compile: bool = False,
    ) -> TeluCodec:
        """Load ``model.safetensors`` + ``codec.json`` (safetensors only: no pickle).

        device: ``"auto"`` = cuda when available. batch_windows: windows per forward pass
        (None = :data:`DEFAULT_BATCH_WINDOWS` for the device). precision, compile: the
        speed options of :func:`infer.fast.prepare` (bf16 changes the output slightly;
        compile costs ~15-20 s once).
        """
        dev = resolve_device(device)
        codec, meta = load_exported(export_dir, device=dev)
        fast.prepare(codec, precision, compile)
        if batch_windows is None:
            batch_windows = DEFAULT_BATCH_WINDOWS.get(dev.type, 1)
        return cls(codec, meta, block_seconds, batch_windows)

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
            raise ArgumentError(f"n_quantizers: must be in 1..{self.n_codebooks}, got {n}")
        return n

    def output_rate(self, code: CodeFile, rate: str | int = "input") -> int:
        """Hz that :meth:`decode` gives for ``rate``: ``"input"`` (the encoded input's
        rate, default), ``"model"`` (the model's rate) or a number of Hz."""
        if rate == "input":
            return code.orig_rate
        if rate == "model":
            return self.sample_rate
        hz = int(rate)
        if not audio.MIN_RATE_HZ <= hz <= audio.MAX_RATE_HZ:
            raise ValueError(
                f"rate: {hz} Hz is outside {audio.MIN_RATE_HZ}-{audio.MAX_RATE_HZ} Hz "
                f"(or use one of {RATES})"
            )
        return hz

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
        w = np.asarray(waveform)
        x = self.condition(w, sample_rate)
        if not len(x):
            raise ValueError("waveform: no samples to encode")
        plan = self.level(x)
        codes = np.concatenate(list(self.encode_windows([x], n_q, plan.gain)), axis=1)
        channels = 1 if w.ndim == 1 else w.shape[1]
        return self.make_codefile(codes, len(x), int(sample_rate), len(w), channels, plan)

    def encode_windows(
        self, blocks: Iterable[np.ndarray], n_q: int, gain: float, key=0
    ) -> Iterator[np.ndarray]:
        """Codes ``[n_q, f]`` of one conditioned signal given as consecutive blocks, window
        core by window core (they concatenate to the whole-signal codes)."""
        wins = blk.audio_windows(
            blocks, self.hop, self.block_frames, self.enc_context, gain, key, tail=self.tail
        )
        for _, codes in batch.run(self.codec, wins, self.batch_windows, n_q):
            yield codes

    def decode(
        self, code: CodeFile, n_quantizers: int | None = None, rate: str | int = "input"
    ) -> np.ndarray:
        """Mono float32 ``(samples,)`` at the input's loudness and, by default, the input's
        rate and length (``rate``: see :meth:`output_rate`). ``n_quantizers``: decode only
        the first n codebooks (default: all stored)."""
        parts = list(self.decode_blocks(code, n_quantizers, rate))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def decode_blocks(
        self, code: CodeFile, n_quantizers: int | None = None, rate: str | int = "input"
    ) -> Iterator[np.ndarray]:
        """:meth:`decode` block by block (bounded memory for hours-long files)."""
        codes = self.checked_codes(code, n_quantizers)
        restore = Restorer(code, self.output_rate(code, rate))
        wins = blk.code_windows(codes, self.block_frames, self.dec_context)
        for _, y in batch.run(self.codec, wins, self.batch_windows):
            if len(out := restore.push(y)):
                yield out
        if len(out := restore.finish()):
            yield out

    def checked_codes(
        self, code: CodeFile, n_quantizers: int | None = None, name: str = "code file"
    ) -> np.ndarray:
        """``code``'s codes (the first ``n_quantizers``), after checking that this model
        can decode them; :class:`CodeFileError` naming ``name`` otherwise."""
        code.check_model(self.model_id, name)
        if code.sample_rate != self.sample_rate:
            raise CodeFileError(f"{name}: rate {code.sample_rate} != model {self.sample_rate}")
        # the model id matched, so these hold unless the file was forged with a valid checksum
        if code.n_q > self.n_codebooks or code.bits != bits_for(self.codebook_size):
            raise CodeFileError(
                f"{name}: {code.n_q} codebooks of {code.bits} bits, the model has "
                f"{self.n_codebooks} of {bits_for(self.codebook_size)}"
            )
        if code.n_samples > code.n_frames * self.hop:
            raise CodeFileError(
                f"{name}: corrupt: {code.n_samples} samples in {code.n_frames} frames of {self.hop}"
            )
        if code.n_samples > (have := self.codec.decoded_length(code.n_frames)):
            # encode writes the frames that cover the input (Codec.frames_for); a file
            # written before the decoder took DAC's length (F * hop - tail) may lack one
            warnings.warn(
                f"{name}: its last {code.n_samples - have} samples decode as silence: its "
                f"{code.n_frames} frames make {have} of {code.n_samples} (a file written "
                "before the decoder took DAC's exact length; encode the source again)",
                stacklevel=2,
            )
        if code.codes.size and int(code.codes.max()) >= self.codebook_size:
            raise CodeFileError(f"{name}: corrupt (codes do not fit the model)")
        if n_quantizers is None:
            return code.codes
        if not 1 <= n_quantizers <= code.n_q:
            raise ArgumentError(f"n_quantizers: {name} holds {code.n_q}, got {n_quantizers}")
        return code.codes[:n_quantizers]

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
        (r,) = encode_jobs(self, [(path, out_path)], self._n_q(n_quantizers))
        return r.raise_error()

    def decode_file(
        self,
        code_path: str | os.PathLike,
        out_path: str | os.PathLike,
        n_quantizers: int | None = None,
        subtype: str | None = None,
        rate: str | int = "input",
    ) -> CodeFile:
        """Decode a ``.tcc`` file into an audio file, streaming. ``rate``: see
        :meth:`output_rate` (default: the input's rate and length). ``subtype``: soundfile
        subtype (default FLOAT for WAV, so restored peaks above full scale survive;
        PCM_24 for FLAC, which clips them, with a warning)."""
        (r,) = decode_jobs(self, [(code_path, out_path)], n_quantizers, rate, subtype)
        return r.raise_error()

    def encode_files(
        self,
        paths: Iterable[str | os.PathLike],
        out_dir: str | os.PathLike,
        n_quantizers: int | None = None,
    ) -> Iterator[FileResult]:
        """Encode many audio files to ``out_dir/<stem>.tcc``, windows of several files
        sharing each forward pass. Yields one :class:`FileResult` per input, in order, as
        each finishes; a bad input is reported in its result and the others go on."""
        jobs = plan_outputs(paths, out_dir, ".tcc")
        return encode_jobs(self, jobs, self._n_q(n_quantizers))

    def decode_files(
        self,
        paths: Iterable[str | os.PathLike],
        out_dir: str | os.PathLike,
        n_quantizers: int | None = None,
        rate: str | int = "input",
        ext: str = ".wav",
        subtype: str | None = None,
    ) -> Iterator[FileResult]:
        """Decode many ``.tcc`` files to ``out_dir/<stem><ext>`` (see :meth:`decode_file`),
        windows of several files sharing each forward pass; results as in
        :meth:`encode_files`."""
        jobs = plan_outputs(paths, out_dir, ext)
        return decode_jobs(self, jobs, n_quantizers, rate, subtype)

    # ---- internals ----------------------------------------------------------------

    def make_codefile(
        self,
        codes: np.ndarray,
        n_samples: int,
        orig_rate: int,
        orig_frames: int,
        orig_channels: int,
        plan: LevelPlan,
    ) -> CodeFile:
        return CodeFile(
            model_id=self.model_id,
            sample_rate=self.sample_rate,
            orig_rate=orig_rate,
            orig_frames=orig_frames,
            orig_channels=orig_channels,
            codebook_size=self.codebook_size,
            n_samples=n_samples,
            gain_db=plan.gain_db,
            loudness_lufs=plan.loudness_lufs,
            codes=codes.astype(np.int64),
        )
