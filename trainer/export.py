"""Export the generator alone for inference: ``model.safetensors`` + ``codec.json``.

``codec.json`` holds the :class:`codec.config.CodecConfig`, the level the model was trained
at (the shard manifest's loudness target and peak ceiling, which inference must apply
before encoding) and ``model_id``, a hash of the weights and that config, so a code file
can name the exact model that made it, and the run's ``loss.mel`` (so ``telucodec-eval``
measures the mel the model was trained on). Weights are safetensors (no pickle), in the plain
``state_dict`` layout of :class:`codec.generator.Codec`, whichever path (DDP, DeepSpeed,
one process) trained them. The format, and the checks a reader makes (model id, finite
weights), live in :mod:`codec.export_format`.

CLI: ``telucodec-export --checkpoint runs/<name>/checkpoints/step_00001000 --out DIR``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from codec.export_format import ExportError, check_finite, export_state_dict
from telucodec.errors import run_cli


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
        mel=cfg.loss.mel,
    )


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
    check_finite(state, str(ck))
    manifest = load_manifest(cfg.data.shards)
    return export_state_dict(
        state,
        cfg.codec,
        manifest.loudness_target_lufs,
        manifest.peak_ceiling_dbfs,
        out_dir,
        step=step,
        mel=cfg.loss.mel,
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
