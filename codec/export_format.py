"""The export format, below both the trainer and inference: ``model.safetensors`` +
``codec.json``.

``codec.json`` holds the :class:`codec.config.CodecConfig`, the level the model was trained
at (the shard manifest's loudness target and peak ceiling, which inference must apply
before encoding), ``model_id``, a hash of the weights and that config, so a code file
can name the exact model that made it, and, when the trainer wrote it, ``mel``: the
:class:`codec.config.MelSpec` of the run's ``loss.mel``, so that ``telucodec-eval`` measures
the mel the model was trained on (:func:`mel_spec`; absent in DAC imports and in exports
written before the format carried it). Weights are safetensors (no pickle), in the plain
``state_dict`` layout of :class:`codec.generator.Codec`.

Reading checks what a file could have broken: the weights must hash to the stored
``model_id`` (a tampered, truncated or mixed-up export is refused), every tensor must be
finite, and each fault names the file (:class:`ExportError`).

Writers: the trainer (:mod:`trainer.export`) and the importer
of pretrained weights (:mod:`codec.dac_import`); readers: inference (:mod:`infer.api`) and
``model.init_from`` in training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from codec.build import build_codec
from codec.config import CodecConfig, MelSpec
from telucodec.errors import UserInputError, environment_fault

WEIGHTS = "model.safetensors"
META = "codec.json"
MEL = "mel"  # codec.json key of the training mel spec (optional)
# 2: the decoder's odd-stride layer became DAC's (F frames -> F*hop - tail samples; the
# same weights decode the last ~28 ms of a segment differently), so version-1 exports are
# refused rather than silently run on a decoder they were not trained with.
EXPORT_VERSION = 2


class ExportError(UserInputError, ValueError):
    """An export or checkpoint that cannot be used (missing, damaged, tampered, non-finite);
    the message names the file."""


def _model_id(weights_path: Path, codec_cfg: dict) -> str:
    h = hashlib.sha256()
    with open(weights_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps(codec_cfg, sort_keys=True).encode())
    return h.hexdigest()[:16]


def export_state_dict(
    state_dict: dict[str, torch.Tensor],
    codec_cfg: CodecConfig,
    loudness_target_lufs: float,
    peak_ceiling_dbfs: float,
    out_dir: str | os.PathLike,
    step: int | None = None,
    extra_meta: dict | None = None,
    mel: MelSpec | None = None,
) -> Path:
    """Write ``state_dict`` (a :class:`codec.generator.Codec`'s) and its ``codec.json`` to
    ``out_dir``. ``extra_meta``: more keys for ``codec.json`` (e.g. where imported weights
    came from); they cannot replace the format's own keys. ``mel``: the mel spec the weights
    were trained with (the run's ``loss.mel``), None when it is not known. A folder the machine refuses
    (read-only, full) is an :class:`~telucodec.errors.EnvironmentFault` naming it."""
    out = Path(out_dir)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    tmp = out / (WEIGHTS + ".tmp")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # bytes written here rather than by save_file, so a read-only or full --out is an
        # OSError with its path and reason, not a library message
        tmp.write_bytes(safetensors_bytes(tensors))
        os.replace(tmp, out / WEIGHTS)
        return _write_meta(out, codec_cfg, loudness_target_lufs, peak_ceiling_dbfs, step,
                           extra_meta, mel)  # fmt: skip
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise environment_fault(e, e.filename or out, "writing the export") from e


def _write_meta(
    out: Path,
    codec_cfg: CodecConfig,
    loudness_target_lufs: float,
    peak_ceiling_dbfs: float,
    step: int | None,
    extra_meta: dict | None,
    mel: MelSpec | None,
) -> Path:
    cfg_dict = dataclasses.asdict(codec_cfg)
    meta = {
        **(extra_meta or {}),
        "export_version": EXPORT_VERSION,
        "model_id": _model_id(out / WEIGHTS, cfg_dict),
        "codec": cfg_dict,
        "sample_rate": codec_cfg.sample_rate,
        "loudness_target_lufs": loudness_target_lufs,
        "peak_ceiling_dbfs": peak_ceiling_dbfs,
        "step": step,
        "bitrates_kbps": [codec_cfg.bitrate_kbps(n) for n in range(1, codec_cfg.n_codebooks + 1)],
    }
    if mel is not None:
        # Not part of model_id: the id names the model that decodes a code file, and the
        # training mel is a fact about how it was scored, not about what it computes.
        meta[MEL] = dataclasses.asdict(mel)
    (out / META).write_text(json.dumps(meta, indent=2))
    return out


def mel_spec(meta: dict) -> MelSpec | None:
    """The mel spec an export's model was trained with (``codec.json``'s ``mel``, the run's
    ``loss.mel``), or None when the export does not record one: a DAC import (whose
    training recipe the importer cannot confirm from the weights) or an export written
    before the format carried it. A malformed entry raises ``TypeError``/``ValueError``;
    :func:`read_export` refuses such a file, so a loaded export's meta always parses."""
    raw = meta.get(MEL)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError(f"{MEL} must be an object, got {type(raw).__name__}")
    return MelSpec(**raw)


def is_export(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding ``codec.json`` and ``model.safetensors``."""
    p = Path(path)
    return (p / META).is_file() and (p / WEIGHTS).is_file()


def check_finite(state: dict[str, torch.Tensor], name: str) -> None:
    """Refuse weights holding NaN or Inf: such a model decodes every input to NaN."""
    for key, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ExportError(f"{name}: tensor {key} holds {bad} NaN/Inf values")


def read_export(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], CodecConfig, dict]:
    """An export folder's ``(state_dict on CPU, codec config, meta dict)``, nothing built.

    Refused with :class:`ExportError` naming the file: a missing or unreadable
    ``codec.json``, weights that do not hash to its ``model_id`` (tampered, truncated, or
    from another export), and NaN/Inf weights.
    """
    p = Path(path)
    meta_path, weights = p / META, p / WEIGHTS
    if not meta_path.exists() or not weights.exists():
        raise ExportError(f"{p}: not a TeluCodec export (needs {META} and {WEIGHTS})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise ExportError(f"{meta_path}: unreadable ({e})") from e
    if not isinstance(meta, dict) or meta.get("export_version") != EXPORT_VERSION:
        version = meta.get("export_version") if isinstance(meta, dict) else None
        if version == 1:
            raise ExportError(
                f"{meta_path}: export_version 1 was written for the decoder before it took "
                "DAC's exact length; export the run's checkpoint again (telucodec-export), "
                "or import DAC weights again (telucodec-import)"
            )
        raise ExportError(f"{meta_path}: export_version {version!r} unsupported")
    try:
        codec_cfg = CodecConfig(**meta["codec"])
        stored_id = str(meta["model_id"])
        mel_spec(meta)  # checked here, so a damaged entry is named at load, not mid-eval
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{meta_path}: damaged ({type(e).__name__}: {e})") from e
    actual_id = _model_id(weights, meta["codec"])
    if actual_id != stored_id:
        raise ExportError(
            f"{weights}: the weights hash to model id {actual_id} but {META} says {stored_id} "
            "(tampered, truncated or mixed-up export; export the checkpoint again)"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as e:
        raise ExportError(f"{weights}: unreadable ({e})") from e
    check_finite(state, str(weights))
    return state, codec_cfg, meta


def load_exported(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load an export folder -> ``(codec in eval mode, meta dict)``; refusals as
    :func:`read_export`, plus weights that do not fit the model in ``codec.json``."""
    state, codec_cfg, meta = read_export(path)
    codec = build_codec(codec_cfg)
    try:
        codec.load_state_dict(state)
    except RuntimeError as e:  # missing/unexpected keys or shapes: not these weights' config
        first = str(e).strip().splitlines()[-1].strip()
        raise ExportError(
            f"{Path(path) / WEIGHTS}: does not fit the model in {META} ({first})"
        ) from e
    return codec.to(device).eval(), meta
