"""Export the generator alone for inference: ``model.safetensors`` + ``codec.json``.

``codec.json`` holds the :class:`codec.config.CodecConfig`, the level the model was trained
at (the shard manifest's loudness target and peak ceiling, which inference must apply
before encoding) and ``model_id``, a hash of the weights and that config, so a code file
can name the exact model that made it. Weights are safetensors (no pickle), in the plain
``state_dict`` layout of :class:`codec.generator.Codec`, whichever path (DDP, DeepSpeed,
one process) trained them.

CLI: ``telucodec-export --checkpoint runs/<name>/checkpoints/step_00001000 --out DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
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
) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    tmp = out / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, out / WEIGHTS)
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
    """Load an export folder -> ``(codec in eval mode, meta dict)``."""
    p = Path(path)
    meta_path, weights = p / META, p / WEIGHTS
    if not meta_path.exists() or not weights.exists():
        raise FileNotFoundError(f"{p}: not a TeluCodec export (needs {META} and {WEIGHTS})")
    meta = json.loads(meta_path.read_text())
    if meta.get("export_version") != EXPORT_VERSION:
        raise ValueError(f"{meta_path}: export_version {meta.get('export_version')!r} unsupported")
    codec_cfg = CodecConfig(**meta["codec"])
    codec = build_codec(codec_cfg)
    codec.load_state_dict(load_file(str(weights), device="cpu"))
    return codec.to(device).eval(), meta


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
        # our own checkpoint (trusted); it pickles DeepSpeed's config objects beside the weights
        blob = torch.load(ds_file, map_location="cpu", weights_only=False)
        module = blob.get("module")
        if not module:
            raise ValueError(f"{ds_file}: no generator weights under 'module' (ZeRO-3 shards?)")
        return module
    raise FileNotFoundError(
        f"{ck}: no generator weights (neither model.safetensors nor "
        "pytorch_model/mp_rank_00_model_states.pt)"
    )


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export the generator of a training checkpoint (Accelerate ``save_state`` folder, from
    the DDP or the DeepSpeed path; the export has the same format either way)."""
    from shards.manifest import load_manifest
    from trainer.checkpoint import is_complete, read_checkpoint_info
    from trainer.config import load_config

    ck = Path(checkpoint)
    if not is_complete(ck):
        raise FileNotFoundError(f"{ck}: not a complete checkpoint (no COMPLETE marker)")
    cfg = load_config(ck / "config.yaml")
    state = checkpoint_generator_state(ck)
    manifest = load_manifest(cfg.data.shards)
    return export_state_dict(
        state,
        cfg.codec,
        manifest.loudness_target_lufs,
        manifest.peak_ceiling_dbfs,
        out_dir,
        step=read_checkpoint_info(ck)["step"],
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="telucodec-export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (step_XXXXXXXX)")
    p.add_argument("--out", required=True, help="export folder")
    args = p.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"telucodec-export: {e}", file=sys.stderr)
        return 2
    print(f"exported to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
