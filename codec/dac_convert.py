"""DAC's generator in our terms: its configuration as a :class:`CodecConfig`, its tensors
in our :class:`codec.generator.Codec` layout, and how its decoder's output length relates to
ours. Pure functions, no files (reading and writing: :mod:`codec.dac_import`).

Our generator is DAC's architecture with DAC's module layout, so DAC's own naming maps one
to one (legacy weight norm ``weight_g``/``weight_v`` -> ``parametrizations.weight.original0/1``)
and transformers' ``DacModel`` naming through a table built from the strides
(:func:`hf_module_names`). A plain ``weight`` (a Hugging Face folder saved without weight
norm) is split into ``g = ||weight||`` per output channel and ``v = weight``, which gives
back the same weight to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codec.build import build_codec
from codec.config import CodecConfig
from telucodec.errors import UserInputError

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
    ),
    "24khz": dict(
        DAC_DEFAULTS,
        encoder_rates=[2, 4, 5, 8],
        decoder_rates=[8, 5, 4, 2],
        n_codebooks=32,
        sample_rate=24000,
    ),
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


def architecture_mismatch(a: CodecConfig, b: CodecConfig) -> list[tuple[str, object, object]]:
    """``(field, a's value, b's value)`` for every architecture field where they differ."""
    out = []
    for name in ARCHITECTURE_FIELDS:
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            out.append((name.removeprefix("resolved_"), va, vb))
    return out
