"""Import pretrained DAC weights (descript-audio-codec) as a TeluCodec export.

Two source formats hold the same generator:

* DAC's own weights file (``weights_16khz.pth``, ``weights_24khz.pth``,
  ``weights_44khz_*.pth``): audiotools' ``BaseModel.save(..., package=False)``, a pickle of
  ``{"state_dict": ..., "metadata": {"kwargs": <DAC constructor arguments>}}`` whose
  convolutions carry legacy weight norm (``weight_g``/``weight_v``). Read with
  ``torch.load(weights_only=True)``: tensors and plain containers only, never code.
* A Hugging Face folder (``config.json`` + ``model.safetensors``) of transformers'
  ``DacModel``: its own module names (``encoder.block.0.res_unit1.conv1``...), convolutions
  either plain (``weight``), legacy (``weight_g``/``weight_v``) or new-style
  (``parametrizations.weight.original0``/``original1``) weight norm.

The mapping onto our generator (:mod:`codec.dac_convert`) is strict: every source tensor
is used exactly once, every target tensor is filled, every shape is checked, and an error
names the key.

**Output length.** Our decoder is DAC's layer for layer, including its transposed
convolutions (kernel ``2 * stride``, padding ``ceil(stride / 2)``), which give ``stride * n
- 1`` positions for an odd stride (the 5 of the 16 and 24 kHz models). So from ``F`` frames
both decode ``F * hop - 8`` samples at 16/24 kHz (``F * hop`` at 44.1 kHz), and every sample
agrees to float rounding; the tests check the whole length. :meth:`Codec.frames_for` gives
the frames that cover a signal, which inference encodes.

**Level.** DAC was trained on audio normalised to -16 LUFS (its ``VolumeNorm`` transform)
and its ``compress`` normalises to -16 LUFS, so the export records -16 LUFS; inference
levels input to that exactly as it does for our own models.

**Quantizer dropout.** audiotools' ``save`` records the constructor's default for any
argument the model does not keep as an attribute, and DAC does not keep
``quantizer_dropout``: every released file says ``False`` whatever training used (DAC's
published recipes use 0.5). The export records 0.0 (inference never drops codebooks); a
fine-tune must set ``codec.quantizer_dropout`` itself (``configs/telugu16k-finetune.yaml``
does).

CLI: ``telucodec-import dac SRC --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from codec.config import CodecConfig
from codec.dac_convert import (
    FRESH_BUFFERS,
    config_from_dac_kwargs,
    config_from_hf,
    convert_state_dict,
)
from codec.export_format import export_state_dict, is_export, read_export
from codec.generator import decoder_shortfall
from telucodec.errors import UserInputError, environment_fault, run_cli

# DAC was trained at this loudness and its compress() normalises to it (see module doc).
DAC_LOUDNESS_LUFS = -16.0
# DAC rescales only clipping audio (audiotools RescaleAudio, ceiling 1.0 = 0 dBFS).
DAC_PEAK_CEILING_DBFS = 0.0


@dataclass
class Pretrained:
    """A generator read from an export, a DAC file or a Hugging Face folder.

    state_dict: in :class:`codec.generator.Codec`'s layout (CPU, float32), complete.
    kind: ``"export"``, ``"dac"`` or ``"huggingface"``.
    notes: things the user should know about the import (printed by the CLI).
    """

    state_dict: dict[str, Tensor]
    config: CodecConfig
    kind: str
    source: Path
    loudness_target_lufs: float
    peak_ceiling_dbfs: float
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- readers


def read_dac_file(path: str | Path) -> Pretrained:
    """DAC's own weights file (audiotools ``save(..., package=False)``)."""
    p = Path(path)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except OSError as e:  # permission denied and the like: the machine, not the file
        raise environment_fault(e, p, "reading DAC weights") from e
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        if "Unsupported global" in str(e):  # a class or function: refused, never run
            raise UserInputError(
                f"{p}: holds objects other than tensors and plain containers, which "
                "torch.load(weights_only=True) refuses to unpickle (they could run code); "
                "DAC's released weights files hold none"
            ) from e
        raise UserInputError(
            f"{p}: not readable as a DAC weights file ({type(e).__name__}); a torch.package "
            "archive (DAC's save() default) is not accepted: use the weights file "
            "(save(..., package=False), as DAC's releases are)"
        ) from e
    if not isinstance(blob, dict) or "state_dict" not in blob or "metadata" not in blob:
        raise UserInputError(
            f"{p}: not a DAC weights file (expected a dict with 'state_dict' and 'metadata')"
        )
    meta = blob["metadata"]
    if not isinstance(meta, dict) or "kwargs" not in meta:
        raise UserInputError(f"{p}: metadata has no 'kwargs' (DAC's constructor arguments)")
    cfg, notes = config_from_dac_kwargs(meta["kwargs"], f"{p}: metadata.kwargs")
    state = convert_state_dict(blob["state_dict"], cfg, "dac", str(p))
    return Pretrained(state, cfg, "dac", p, DAC_LOUDNESS_LUFS, DAC_PEAK_CEILING_DBFS, notes)


def read_hf_folder(path: str | Path) -> Pretrained:
    """A transformers ``DacModel`` folder (``save_pretrained``: config.json + model.safetensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    cfg_path, weights = p / "config.json", p / "model.safetensors"
    if not weights.is_file():
        hint = " (sharded checkpoints are not supported)" if any(p.glob("*.index.json")) else ""
        raise UserInputError(f"{p}: no model.safetensors{hint}")
    try:
        hf = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"{cfg_path}: not valid JSON ({e})") from e
    cfg, notes = config_from_hf(hf, str(cfg_path))
    try:
        src = load_file(str(weights), device="cpu")
    except SafetensorError as e:
        raise UserInputError(f"{weights}: not a readable safetensors file ({e})") from e
    state = convert_state_dict(src, cfg, "huggingface", str(weights))
    return Pretrained(state, cfg, "huggingface", p, DAC_LOUDNESS_LUFS, DAC_PEAK_CEILING_DBFS, notes)


def read_export_source(path: str | Path) -> Pretrained:
    """One of our own exports, as a :class:`Pretrained`."""
    try:
        state, cfg, meta = read_export(path)
    except (FileNotFoundError, ValueError) as e:
        raise UserInputError(str(e)) from e
    return Pretrained(
        state,
        cfg,
        "export",
        Path(path),
        float(meta["loudness_target_lufs"]),
        float(meta["peak_ceiling_dbfs"]),
    )


def load_pretrained(path: str | Path) -> Pretrained:
    """The generator at ``path``: an export folder, a DAC weights file or a Hugging Face
    DAC folder, told apart by what the path holds."""
    p = Path(path)
    if p.is_file():
        return read_dac_file(p)
    if p.is_dir():
        if is_export(p):
            return read_export_source(p)
        if (p / "config.json").is_file():
            return read_hf_folder(p)
        raise UserInputError(
            f"{p}: neither a TeluCodec export (codec.json + model.safetensors) nor a Hugging "
            "Face DAC folder (config.json + model.safetensors)"
        )
    raise UserInputError(f"{p}: no such file or folder")


def write_export(pre: Pretrained, out_dir: str | Path) -> Path:
    """Write ``pre`` as an export in ``out_dir`` (``codec.json`` says where it came from).

    No training mel spec is recorded: a weights file does not say which recipe trained it
    (the released 16 kHz model's is :class:`codec.config.MelSpec`'s default, which eval
    falls back to, but a user's own DAC file may differ), so eval says it used the default."""
    extra = {"imported_from": {"kind": pre.kind, "path": str(pre.source)}}
    return export_state_dict(
        pre.state_dict,
        pre.config,
        pre.loudness_target_lufs,
        pre.peak_ceiling_dbfs,
        out_dir,
        extra_meta=extra,
    )


def as_export(path: str | Path, tmp_dir: str | Path) -> Path:
    """``path`` itself when it is an export, else its import written under ``tmp_dir``."""
    if is_export(path):
        return Path(path)
    return write_export(load_pretrained(path), Path(tmp_dir) / "imported")


# --------------------------------------------------------------------------- CLI


def import_dac(
    src: str | Path,
    out_dir: str | Path,
    loudness_target_lufs: float | None = None,
    peak_ceiling_dbfs: float | None = None,
) -> tuple[Path, Pretrained]:
    """Import a DAC weights file or Hugging Face DAC folder into an export at ``out_dir``.
    The level defaults to DAC's (-16 LUFS, 0 dBFS ceiling)."""
    out = Path(out_dir)
    if is_export(out):
        raise UserInputError(f"{out}: already holds an export; choose another --out")
    pre = load_pretrained(src)
    if pre.kind == "export":
        raise UserInputError(f"{src}: is already a TeluCodec export; nothing to import")
    if loudness_target_lufs is not None:
        pre.loudness_target_lufs = float(loudness_target_lufs)
    if peak_ceiling_dbfs is not None:
        pre.peak_ceiling_dbfs = float(peak_ceiling_dbfs)
    return write_export(pre, out), pre


def _describe(pre: Pretrained, out: Path) -> str:
    cfg = pre.config
    meta = json.loads((out / "codec.json").read_text())
    params = sum(t.numel() for k, t in pre.state_dict.items() if k not in FRESH_BUFFERS)
    lines = [
        f"imported {pre.kind} weights from {pre.source} -> {out}",
        f"model id {meta['model_id']}; {params / 1e6:.1f} M parameters",
        f"codec: {cfg.summary()}",
        f"level: {pre.loudness_target_lufs:g} LUFS, peak ceiling {pre.peak_ceiling_dbfs:g} dBFS",
    ]
    if (tail := decoder_shortfall(cfg.decoder_rates)) > 0:
        lines.append(
            f"length: as DAC's, F frames decode to F*{cfg.hop_length} - {tail} samples "
            "(odd decoder stride; inference encodes the frames that cover the input)"
        )
    lines += [f"note: {n}" for n in pre.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="telucodec-import", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="format", required=True)
    d = sub.add_parser("dac", help="DAC weights file (.pth) or Hugging Face DAC folder")
    d.add_argument("src", help="weights_16khz.pth (DAC release) or a descript/dac_16khz folder")
    d.add_argument("--out", required=True, help="export folder to write")
    d.add_argument("--loudness-target-lufs", type=float, default=None,
                   help=f"level inference brings input to (default DAC's {DAC_LOUDNESS_LUFS:g})")  # fmt: skip
    d.add_argument("--peak-ceiling-dbfs", type=float, default=None,
                   help=f"peak guard of that level (default {DAC_PEAK_CEILING_DBFS:g})")  # fmt: skip
    args = p.parse_args(argv)

    def run() -> None:
        out, pre = import_dac(args.src, args.out, args.loudness_target_lufs, args.peak_ceiling_dbfs)
        print(_describe(pre, out))

    return run_cli("telucodec-import", run)


if __name__ == "__main__":
    sys.exit(main())
