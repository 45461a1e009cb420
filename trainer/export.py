"""Export the generator alone for inference: ``model.safetensors`` + ``codec.json``.

``codec.json`` holds the :class:`codec.config.CodecConfig`, the level the model was trained
at (the shard manifest's loudness target and peak ceiling, which inference must apply
before encoding) and ``model_id``, a hash of the weights and that config, so a code file
can name the exact model that made it. Weights are safetensors (no pickle), in the plain
``state_dict`` layout of :class:`codec.generator.Codec`, whichever path (DDP, DeepSpeed,
one process) trained them.

Loading checks what a file could have broken: the weights must hash to the stored
``model_id`` (a tampered, truncated or mixed-up export is refused), every tensor must be
finite, and each fault names the file (:class:`ExportError`).

CLI: ``telucodec-export --checkpoint runs/<name>/checkpoints/step_00001000 --out DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from codec.build import build_codec
from codec.config import CodecConfig
from telucodec.errors import UserInputError, environment_fault, run_cli

WEIGHTS = "model.safetensors"
META = "codec.json"
EXPORT_VERSION = 1


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
) -> Path:
    out = Path(out_dir)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    tmp = out / (WEIGHTS + ".tmp")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # bytes written here rather than by save_file, so a read-only or full --out is an
        # OSError with its path and reason, not a library message
        tmp.write_bytes(safetensors_bytes(tensors))
        os.replace(tmp, out / WEIGHTS)
        return _write_meta(out, codec_cfg, loudness_target_lufs, peak_ceiling_dbfs, step)
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
) -> Path:
    cfg_dict = dataclasses.asdict(codec_cfg)
    meta = {
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


def export_generator(
    codec: torch.nn.Module, cfg, manifest, out_dir, step: int | None = None
) -> Path:
    """Export an (unwrapped) generator trained under ``cfg`` on shards with ``manifest``."""
    return export_state_dict(
        codec.state_dict(),
        cfg.codec,
        manifest.loudness_target_lufs,
        manifest.peak_ceiling_dbfs,
        out_dir,
        step=step,
    )


def load_exported(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load an export folder -> ``(codec in eval mode, meta dict)``.

    Refused with :class:`ExportError` naming the file: a missing or unreadable
    ``codec.json``, weights that do not hash to its ``model_id`` (tampered, truncated, or
    from another export), weights that do not fit its config, and NaN/Inf weights.
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
        raise ExportError(f"{meta_path}: export_version {version!r} unsupported")
    try:
        codec_cfg = CodecConfig(**meta["codec"])
        stored_id = str(meta["model_id"])
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
    _check_finite(state, str(weights))
    codec = build_codec(codec_cfg)
    try:
        codec.load_state_dict(state)
    except RuntimeError as e:  # missing/unexpected keys or shapes: not these weights' config
        first = str(e).strip().splitlines()[-1].strip()
        raise ExportError(f"{weights}: does not fit the model in {META} ({first})") from e
    return codec.to(device).eval(), meta


def _check_finite(state: dict[str, torch.Tensor], name: str) -> None:
    """Refuse weights holding NaN or Inf: such a model decodes every input to NaN."""
    for key, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ExportError(f"{name}: tensor {key} holds {bad} NaN/Inf values")


def checkpoint_generator_state(ck: Path) -> dict[str, torch.Tensor]:
    """The generator's full ``state_dict`` from a checkpoint written by either path.

    DDP / one process: Accelerate saves the first prepared model (the generator) as
    ``model.safetensors``. DeepSpeed: the engine (the generator) is saved under
    ``pytorch_model/``; with ZeRO stage 0-2 ``mp_rank_00_model_states.pt`` holds the full
    module weights under ``"module"`` (ZeRO only partitions optimizer state and gradients).
    """
    if (ck / "model.safetensors").exists():
        return load_file(str(ck / "model.safetensors"), device="cpu")
    ds_file = ck / "pytorch_model" / "mp_rank_00_model_states.pt"
    if ds_file.exists():
        # weights only: a shared checkpoint must not run code (trainer.checkpoint)
        from trainer.checkpoint import safe_torch_load

        blob = safe_torch_load(ds_file)
        module = blob.get("module") if isinstance(blob, dict) else None
        if not module:
            raise ExportError(f"{ds_file}: no generator weights under 'module' (ZeRO-3 shards?)")
        return module
    raise ExportError(
        f"{ck}: no generator weights (neither model.safetensors nor "
        "pytorch_model/mp_rank_00_model_states.pt)"
    )


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export the generator of a training checkpoint (Accelerate ``save_state`` folder, from
    the DDP or the DeepSpeed path; the export has the same format either way)."""
    from shards.manifest import load_manifest
    from trainer.checkpoint import read_checkpoint_info
    from trainer.config import load_config

    ck = Path(checkpoint)
    step = read_checkpoint_info(ck)["step"]  # refuses an incomplete or damaged checkpoint
    cfg = load_config(ck / "config.yaml")
    state = checkpoint_generator_state(ck)
    _check_finite(state, str(ck))
    manifest = load_manifest(cfg.data.shards)
    return export_state_dict(
        state,
        cfg.codec,
        manifest.loudness_target_lufs,
        manifest.peak_ceiling_dbfs,
        out_dir,
        step=step,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="telucodec-export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (step_XXXXXXXX)")
    p.add_argument("--out", required=True, help="export folder")
    args = p.parse_args(argv)
    return run_cli("telucodec-export", lambda: print(f"exported to {_export(args)}"))


def _export(args: argparse.Namespace) -> Path:
    return export_checkpoint(args.checkpoint, args.out)


if __name__ == "__main__":
    sys.exit(main())
