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

Our generator (:mod:`codec.generator`) is DAC's architecture with DAC's module layout, so
the DAC naming maps one to one and the Hugging Face naming through a table built from the
strides. Loading is strict: every source tensor is used exactly once, every target tensor
is filled, every shape is checked, and an error names the key. A plain ``weight`` is split
into weight norm's ``g = ||weight||`` (per output channel) and ``v = weight``, which gives
back the same weight to float rounding.

**One architectural difference: output length.** For odd decoder strides (the 5 of the 16
and 24 kHz models) DAC's transposed convolution gives ``stride * n - 1`` samples where ours
gives ``stride * n`` (``output_padding``, so a frame is exactly ``hop`` samples). So from
``F`` frames DAC decodes ``F * hop - 8`` samples (16/24 kHz) and we decode ``F * hop``; the
samples agree to float rounding except the last few hundred (445 at 16/24 kHz, 28 ms at
16 kHz), which in DAC see zero padding where ours see the extra sample
(:func:`decoder_lengths` computes both lengths and the exact prefix; the tests check it).
The 44.1 kHz model's strides are all even: same length, same samples. Encoders and codes
are identical.

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
import math
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from codec.build import build_codec
from codec.config import CodecConfig
from codec.export_format import export_state_dict, is_export, read_export
from telucodec.errors import UserInputError, run_cli

# DAC was trained at this loudness and its compress() normalises to it (see module doc).
DAC_LOUDNESS_LUFS = -16.0
# DAC rescales only clipping audio (audiotools RescaleAudio, ceiling 1.0 = 0 dBFS).
DAC_PEAK_CEILING_DBFS = 0.0

# DAC's constructor arguments and their defaults (dac.model.dac.DAC, descript-audio-codec
# 1.0.0); a file that lacks one was saved with that default.
DAC_DEFAULTS: dict = {
    "encoder_dim": 64,
    "encoder_rates": [2, 4, 8, 8],
    "latent_dim": None,
    "decoder_dim": 1536,
    "decoder_rates": [8, 8, 4, 2],
    "n_codebooks": 9,
    "codebook_size": 1024,
    "codebook_dim": 8,
    "quantizer_dropout": False,
    "sample_rate": 44100,
}

# The released models' arguments (DAC's conf/final/*.yml); used by the tests and docs.
DAC_RELEASED: dict[str, dict] = {
    "16khz": dict(
        DAC_DEFAULTS,
        encoder_rates=[2, 4, 5, 8],
        decoder_rates=[8, 5, 4, 2],
        n_codebooks=12,
        sample_rate=16000,
    ),  # fmt: skip
    "24khz": dict(
        DAC_DEFAULTS,
        encoder_rates=[2, 4, 5, 8],
        decoder_rates=[8, 5, 4, 2],
        n_codebooks=32,
        sample_rate=24000,
    ),  # fmt: skip
    "44khz": dict(DAC_DEFAULTS),
}

# Architecture fields a source fixes; the rest of CodecConfig are training choices.
ARCHITECTURE_FIELDS = (
    "sample_rate",
    "encoder_dim",
    "encoder_rates",
    "resolved_latent_dim",
    "decoder_dim",
    "decoder_rates",
    "n_codebooks",
    "codebook_size",
    "codebook_dim",
)

DROPOUT_NOTE = (
    "quantizer_dropout: DAC's saved metadata says {value!r}, but that is the constructor's "
    "default, not what training used (DAC's recipes use 0.5); the export records 0.0, "
    "which inference never uses. Set codec.quantizer_dropout in a fine-tune config "
    "(configs/telugu16k-finetune.yaml sets 0.5)."
)


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


# --------------------------------------------------------------------------- configs


def config_from_dac_kwargs(kwargs: dict, where: str) -> tuple[CodecConfig, list[str]]:
    """Our :class:`CodecConfig` for DAC constructor arguments ``kwargs`` (missing ones take
    DAC's defaults). Arguments we do not know, or values our architecture cannot express,
    raise :class:`UserInputError` naming ``where`` and the argument."""
    if not isinstance(kwargs, dict):
        raise UserInputError(f"{where}: metadata.kwargs is not a mapping")
    unknown = sorted(set(kwargs) - set(DAC_DEFAULTS))
    if unknown:
        raise UserInputError(
            f"{where}: DAC argument(s) {unknown} are not part of the DAC architecture this "
            f"importer knows (descript-audio-codec 1.0.0: {sorted(DAC_DEFAULTS)}); refusing "
            "rather than guessing"
        )
    k = {**DAC_DEFAULTS, **kwargs}
    cb_dim = k["codebook_dim"]
    if isinstance(cb_dim, list | tuple):
        if len(set(cb_dim)) != 1 or len(cb_dim) != k["n_codebooks"]:
            raise UserInputError(
                f"{where}: codebook_dim {list(cb_dim)}: codebooks of different dimensions "
                "are not supported (our quantizer has one codebook_dim for all codebooks)"
            )
        cb_dim = cb_dim[0]
    for name in ("encoder_rates", "decoder_rates"):
        if 1 in list(k[name]):
            raise UserInputError(
                f"{where}: {name} {list(k[name])}: stride 1 is not supported (our "
                "transposed-conv length arithmetic needs strides >= 2)"
            )
    latent = k["latent_dim"]
    rule = k["encoder_dim"] * 2 ** len(k["encoder_rates"])
    drop = k["quantizer_dropout"]
    notes = [DROPOUT_NOTE.format(value=drop)]
    try:
        cfg = CodecConfig(
            sample_rate=int(k["sample_rate"]),
            encoder_dim=int(k["encoder_dim"]),
            encoder_rates=tuple(int(r) for r in k["encoder_rates"]),
            latent_dim=None if latent is None or int(latent) == rule else int(latent),
            decoder_dim=int(k["decoder_dim"]),
            decoder_rates=tuple(int(r) for r in k["decoder_rates"]),
            n_codebooks=int(k["n_codebooks"]),
            codebook_size=int(k["codebook_size"]),
            codebook_dim=int(cb_dim),
            quantizer_dropout=0.0,
        )
    except (TypeError, ValueError) as e:
        raise UserInputError(f"{where}: DAC arguments do not map to a codec config: {e}") from e
    return cfg, notes


def config_from_hf(hf: dict, where: str) -> tuple[CodecConfig, list[str]]:
    """Our config for a transformers ``DacConfig`` dict (``config.json``)."""
    if hf.get("model_type") != "dac":
        raise UserInputError(
            f"{where}: model_type is {hf.get('model_type')!r}, not 'dac' (a transformers "
            "DacModel folder is expected)"
        )
    try:
        down = list(hf.get("downsampling_ratios", [2, 4, 8, 8]))
        up = list(hf.get("upsampling_ratios") or down[::-1])
        enc_dim = int(hf.get("encoder_hidden_size", 64))
        hidden = hf.get("hidden_size")
        if hidden is not None and int(hidden) != enc_dim * 2 ** len(down):
            raise UserInputError(
                f"{where}: hidden_size {hidden} != encoder_hidden_size * 2**len("
                f"downsampling_ratios) = {enc_dim * 2 ** len(down)}; DacModel cannot build it"
            )
        kwargs = {
            "encoder_dim": enc_dim,
            "encoder_rates": down,
            "decoder_dim": int(hf.get("decoder_hidden_size", 1536)),
            "decoder_rates": up,
            "n_codebooks": int(hf.get("n_codebooks", 9)),
            "codebook_size": int(hf.get("codebook_size", 1024)),
            "codebook_dim": int(hf.get("codebook_dim", 8)),
            "quantizer_dropout": hf.get("quantizer_dropout", 0.0),
            "sample_rate": int(hf.get("sampling_rate", 16000)),
        }
    except (TypeError, ValueError) as e:
        raise UserInputError(f"{where}: cannot read the DAC configuration: {e}") from e
    return config_from_dac_kwargs(kwargs, where)


# --------------------------------------------------------------------------- naming


def hf_module_names(cfg: CodecConfig) -> dict[str, str]:
    """Our module path -> transformers ``DacModel``'s, for every module with tensors."""
    names: dict[str, str] = {"encoder.block.0": "encoder.conv1", "decoder.model.0": "decoder.conv1"}

    def res_unit(ours: str, theirs: str) -> None:
        for i, part in enumerate(("snake1", "conv1", "snake2", "conv2")):
            names[f"{ours}.block.{i}"] = f"{theirs}.{part}"

    n_enc = len(cfg.encoder_rates)
    for i in range(n_enc):
        ours, theirs = f"encoder.block.{i + 1}", f"encoder.block.{i}"
        for j in range(3):
            res_unit(f"{ours}.block.{j}", f"{theirs}.res_unit{j + 1}")
        names[f"{ours}.block.3"] = f"{theirs}.snake1"
        names[f"{ours}.block.4"] = f"{theirs}.conv1"
    names[f"encoder.block.{n_enc + 1}"] = "encoder.snake1"
    names[f"encoder.block.{n_enc + 2}"] = "encoder.conv2"
    n_dec = len(cfg.decoder_rates)
    for i in range(n_dec):
        ours, theirs = f"decoder.model.{i + 1}", f"decoder.block.{i}"
        names[f"{ours}.block.0"] = f"{theirs}.snake1"
        names[f"{ours}.block.1"] = f"{theirs}.conv_t1"
        for j in range(3):
            res_unit(f"{ours}.block.{j + 2}", f"{theirs}.res_unit{j + 1}")
    names[f"decoder.model.{n_dec + 1}"] = "decoder.snake1"
    names[f"decoder.model.{n_dec + 2}"] = "decoder.conv2"
    for q in range(cfg.n_codebooks):
        for part in ("in_proj", "out_proj", "codebook"):
            names[f"quantizer.quantizers.{q}.{part}"] = f"quantizer.quantizers.{q}.{part}"
    return names


# source key suffix -> the role of the tensor
_SUFFIXES = (
    (".parametrizations.weight.original0", "g"),
    (".parametrizations.weight.original1", "v"),
    (".weight_g", "g"),
    (".weight_v", "v"),
    (".weight", "w"),
    (".bias", "bias"),
    (".alpha", "alpha"),
)
_OURS_G = ".parametrizations.weight.original0"
_OURS_V = ".parametrizations.weight.original1"
FRESH_BUFFERS = ("quantizer.usage_ema",)  # ours only: codebook-usage statistics, start fresh


def _split(key: str) -> tuple[str, str] | None:
    for suffix, role in _SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], role
    return None


def convert_state_dict(
    src: dict[str, Tensor], cfg: CodecConfig, naming: str, where: str
) -> dict[str, Tensor]:
    """A DAC generator ``state_dict`` (``naming`` ``"dac"`` or ``"huggingface"``) in our layout.

    Strict: raises :class:`UserInputError` naming the key for a source tensor that maps to
    nothing, one used twice (``weight`` beside ``weight_g``/``weight_v``), a target with no
    source, a shape that differs from the architecture in ``cfg``, or a non-float tensor.
    """
    with torch.device("meta"):
        target = build_codec(cfg).state_dict()
    modules: dict[str, dict[str, tuple]] = {}  # our module -> role -> (our key, shape)
    for key, t in target.items():
        if key in FRESH_BUFFERS:
            continue
        if key.endswith(_OURS_G):
            mod, role = key[: -len(_OURS_G)], "g"
        elif key.endswith(_OURS_V):
            mod, role = key[: -len(_OURS_V)], "v"
        else:
            mod, _, leaf = key.rpartition(".")
            role = {"weight": "w", "bias": "bias", "alpha": "alpha"}[leaf]
        modules.setdefault(mod, {})[role] = (key, tuple(t.shape))
    theirs = hf_module_names(cfg) if naming == "huggingface" else {m: m for m in modules}

    by_source: dict[tuple[str, str], str] = {}  # (source module, role) -> source key
    for key in src:
        parsed = _split(key)
        if parsed is None:
            raise UserInputError(f"{where}: tensor {key!r} is not part of a DAC generator")
        by_source[parsed] = key
    used: set[str] = set()
    out: dict[str, Tensor] = {}

    def take(mod: str, role: str, want: tuple, our_key: str) -> Tensor:
        key = by_source.get((mod, role))
        if key is None:
            raise UserInputError(f"{where}: missing tensor for {our_key} (expected a key {mod}.*)")
        t = src[key]
        if not torch.is_floating_point(t):
            raise UserInputError(f"{where}: tensor {key!r} has dtype {t.dtype}, expected float")
        if tuple(t.shape) != want:
            raise UserInputError(
                f"{where}: tensor {key!r} has shape {list(t.shape)}, the architecture in the "
                f"configuration needs {list(want)}"
            )
        used.add(key)
        return t.detach().to("cpu", torch.float32)

    for mod, roles in modules.items():
        src_mod = theirs.get(mod)
        if src_mod is None:  # a module of ours the naming table does not cover: our bug
            raise RuntimeError(f"no {naming} name for module {mod}")
        if "g" in roles:  # a weight-normalised convolution
            (g_key, g_shape), (v_key, v_shape) = roles["g"], roles["v"]
            has_gv = (src_mod, "g") in by_source or (src_mod, "v") in by_source
            if has_gv and (src_mod, "w") in by_source:
                raise UserInputError(
                    f"{where}: both {by_source[(src_mod, 'w')]!r} and weight-norm tensors for "
                    f"{src_mod}; expected one form"
                )
            if has_gv:
                out[g_key] = take(src_mod, "g", g_shape, g_key)
                out[v_key] = take(src_mod, "v", v_shape, v_key)
            else:
                w = take(src_mod, "w", v_shape, v_key)
                # weight norm over every dim but 0 (torch's default, as DAC uses it)
                out[g_key] = torch.linalg.vector_norm(w, dim=tuple(range(1, w.dim())), keepdim=True)
                out[v_key] = w
        for role in ("w", "bias", "alpha"):
            if role in roles and not (role == "w" and "g" in roles):
                our_key, shape = roles[role]
                out[our_key] = take(src_mod, role, shape, our_key)
    unused = sorted(set(src) - used)
    if unused:
        more = f" and {len(unused) - 1} more" if len(unused) > 1 else ""
        raise UserInputError(
            f"{where}: tensor {unused[0]!r}{more} not used: the file holds more than the "
            "generator its configuration describes"
        )
    for key in FRESH_BUFFERS:
        out[key] = torch.ones(target[key].shape)
    return out


# --------------------------------------------------------------------------- readers


def read_dac_file(path: str | Path) -> Pretrained:
    """DAC's own weights file (audiotools ``save(..., package=False)``)."""
    p = Path(path)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise UserInputError(
            f"{p}: not readable as a DAC weights file with torch.load(weights_only=True) "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); a torch.package "
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
    """Write ``pre`` as an export in ``out_dir`` (``codec.json`` says where it came from)."""
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


def architecture_mismatch(a: CodecConfig, b: CodecConfig) -> list[tuple[str, object, object]]:
    """``(field, a's value, b's value)`` for every architecture field where they differ."""
    out = []
    for name in ARCHITECTURE_FIELDS:
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            out.append((name.removeprefix("resolved_"), va, vb))
    return out


# --------------------------------------------------------------------------- lengths


def decoder_lengths(decoder_rates: tuple[int, ...], frames: int) -> tuple[int, int, int]:
    """``(ours, dac, exact)`` for ``frames`` code frames: the samples our decoder gives,
    the samples DAC's gives, and how many leading samples agree to float rounding.

    Derivation: DAC's transposed conv (kernel ``2s``, padding ``p = ceil(s/2)``) yields
    ``s*n - 1`` samples for an odd stride ``s``; ours adds ``output_padding = 1``, an extra
    last sample that DAC's next layers replace by zero padding. From that sample on, every
    layer spreads the difference backwards by its right reach: ``3 * dilation`` for each
    residual unit (kernel 7, dilations 1, 3, 9), ``c -> c*s - p`` for a transposed conv,
    3 for the last conv.
    """
    ours = dac = frames
    exact: int | None = None  # first sample index that may differ (None: none yet)
    for s in decoder_rates:
        p = math.ceil(s / 2)
        ours = ours * s
        dac = (dac - 1) * s - 2 * p + 2 * s
        if exact is not None:
            exact = exact * s - p
        if dac < ours and exact is None:
            exact = dac
        if exact is not None:
            exact = min(exact, dac) - (3 + 9 + 27)
    if exact is not None:
        exact -= 3  # the final kernel-7 conv
    return ours, dac, dac if exact is None else max(0, exact)


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
    ours, dac, exact = decoder_lengths(cfg.decoder_rates, 100)
    lines = [
        f"imported {pre.kind} weights from {pre.source} -> {out}",
        f"model id {meta['model_id']}; {params / 1e6:.1f} M parameters",
        f"codec: {cfg.summary()}",
        f"level: {pre.loudness_target_lufs:g} LUFS, peak ceiling {pre.peak_ceiling_dbfs:g} dBFS",
    ]
    if dac != ours:
        lines.append(
            f"length: from F frames this decoder gives F*{cfg.hop_length} samples, DAC's "
            f"{ours - dac} fewer; all but the last {ours - exact} agree to float rounding "
            "(odd decoder stride: see codec/dac_import.py)"
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
