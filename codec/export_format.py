"""The export format, below both the trainer and inference: ``model.safetensors`` +
``codec.json``.

``codec.json`` holds the :class:`codec.config.CodecConfig`, the level the model was trained
at (the shard manifest's loudness target and peak ceiling, which inference must apply
before encoding) and ``model_id``, a hash of the weights and that config, so a code file
can name the exact model that made it. Weights are safetensors (no pickle), in the plain
``state_dict`` layout of :class:`codec.generator.Codec`.

Writers: the trainer (:mod:`trainer.export`, which re-exports these names) and the importer
of pretrained weights (:mod:`codec.dac_import`); readers: inference (:mod:`infer.api`) and
``model.init_from`` in training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from codec.build import build_codec
from codec.config import CodecConfig

WEIGHTS = "model.safetensors"
META = "codec.json"
EXPORT_VERSION = 1


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
) -> Path:
    """Write ``state_dict`` (a :class:`codec.generator.Codec`'s) and its ``codec.json`` to
    ``out_dir``. ``extra_meta``: more keys for ``codec.json`` (e.g. where imported weights
    came from); they cannot replace the format's own keys."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    tmp = out / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, out / WEIGHTS)
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
    (out / META).write_text(json.dumps(meta, indent=2))
    return out


def is_export(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding ``codec.json`` and ``model.safetensors``."""
    p = Path(path)
    return (p / META).is_file() and (p / WEIGHTS).is_file()


def read_export(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], CodecConfig, dict]:
    """An export folder's ``(state_dict on CPU, codec config, meta dict)``, nothing built."""
    p = Path(path)
    meta_path, weights = p / META, p / WEIGHTS
    if not meta_path.exists() or not weights.exists():
        raise FileNotFoundError(f"{p}: not a TeluCodec export (needs {META} and {WEIGHTS})")
    meta = json.loads(meta_path.read_text())
    if meta.get("export_version") != EXPORT_VERSION:
        raise ValueError(f"{meta_path}: export_version {meta.get('export_version')!r} unsupported")
    return load_file(str(weights), device="cpu"), CodecConfig(**meta["codec"]), meta


def load_exported(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load an export folder -> ``(codec in eval mode, meta dict)``."""
    state, codec_cfg, meta = read_export(path)
    codec = build_codec(codec_cfg)
    codec.load_state_dict(state)
    return codec.to(device).eval(), meta
