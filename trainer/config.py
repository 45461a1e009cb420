"""Typed experiment configuration: YAML presets in ``configs/`` + ``key=value`` overrides.

One :class:`ExperimentConfig` describes a run completely; it is validated when built (each
section's ``__post_init__`` names the bad field), saved into every checkpoint and into the
W&B run, and re-read on resume. Model/loss sections are the dataclasses that live next to
the code they configure (:mod:`codec.config`); this module adds the run, data, optimiser,
validation, checkpoint and W&B sections and the loading machinery.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codec.config import MEL_RENAMED, CodecConfig, DiscriminatorConfig, LossConfig
from telucodec.errors import UserInputError
from trainer.stopping import parse_signals


class ConfigError(UserInputError, ValueError):
    """A config value is missing, unknown or out of range, or the config file cannot be read;
    the message names the field or the file (and line)."""


def _check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config field `{name}`: {msg}")


@dataclass
class RunConfig:
    """Where the run lives and how long it is.

    precision: "auto" (bf16 on a CUDA GPU, fp32 on CPU), "bf16", "fp16" (with a grad
        scaler), or "no" (fp32). STFT/mel computations are fp32 whatever this says.
    cpu: force CPU even when a GPU is present (and let Accelerate form a multi-process
        group on CPU, which it only does when asked).
    compile: ``torch.compile`` the generator and the discriminator (the fp32 STFT/mel islands
        compile with them; the losses stay eager). Off by default: on CPU the compiled step
        is slower and its first step takes minutes to compile (BENCHMARKS.md, the
        torch.compile row); ``benchmarks/bench_step.py --compile`` measures it on a GPU.
    cudnn_benchmark: let cuDNN time its convolution algorithms for each new input shape and
        keep the fastest (training crops have one fixed shape, so it tunes once).
    stop_signals / stop_file: ways to ask a running job to save a checkpoint and stop
        (trainer/stopping.py); stop_file None = ``<run_dir>/STOP``.
    agree_every: on several processes, the ranks agree on wall-clock limits
        (``max_minutes``, ``validation.every_minutes``) and stop requests every this many
        steps: one tiny all-reduce and one host sync. Small enough that a SIGTERM, which the
        launcher follows with SIGKILL after 30 s, is acted on in time at GPU step rates.
    dist_timeout_minutes: how long a collective may wait for the slowest rank before the
        process group fails the job. Rank 0 validates while the others wait in a barrier,
        so it must outlast the longest validation; None = 4 minutes per minute of validation
        audio (``validation.max_seconds``), at least 30. Validation logs its wall time beside
        this value.
    """

    name: str = "telucodec"
    output_dir: str = "runs"
    max_steps: int = 1000
    log_every: int = 10
    precision: str = "auto"
    cpu: bool = False
    seed: int = 0
    max_minutes: float | None = None  # stop cleanly (with a checkpoint) after this wall time
    # Re-initialise dead codebook entries every N optimizer steps (0 = never). Rank 0 draws
    # the replacements and broadcasts them (trainer.distributed.replace_dead_codes).
    dead_code_every: int = 100
    # Price of one accelerator-hour (any currency; None = no cost lines). The run logs
    # device-hours (processes x wall hours) and money spent, and projects both to max_steps.
    gpu_hourly_cost: float | None = None
    compile: bool = False
    cudnn_benchmark: bool = True
    stop_signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")
    stop_file: str | None = None
    agree_every: int = 10
    dist_timeout_minutes: float | None = None

    def __post_init__(self) -> None:
        _check(
            self.gpu_hourly_cost is None or self.gpu_hourly_cost >= 0,
            "run.gpu_hourly_cost",
            f"must be >= 0 or null, got {self.gpu_hourly_cost}",
        )
        _check(self.max_steps > 0, "run.max_steps", f"must be > 0, got {self.max_steps}")
        _check(self.log_every > 0, "run.log_every", f"must be > 0, got {self.log_every}")
        _check(
            self.precision in ("auto", "bf16", "fp16", "no"),
            "run.precision",
            f"must be auto, bf16, fp16 or no, got {self.precision!r}",
        )
        _check(bool(self.name), "run.name", "must not be empty")
        _check(self.dead_code_every >= 0, "run.dead_code_every", "must be >= 0")
        _check(self.agree_every > 0, "run.agree_every", f"must be > 0, got {self.agree_every}")
        _check(
            self.dist_timeout_minutes is None or self.dist_timeout_minutes > 0,
            "run.dist_timeout_minutes",
            f"must be > 0 or null, got {self.dist_timeout_minutes}",
        )
        try:
            parse_signals(self.stop_signals)
        except ValueError as e:
            raise ConfigError(f"config field `run.stop_signals`: {e}") from None

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


@dataclass
class DataConfig:
    """The shard set and how batches are cut from it.

    shards: folder holding ``manifest.json`` (written by ``telucodec-prep``).
    shard_base: where the tar files are, if not beside the manifest: a folder or a URL
        prefix (``pipe:aws s3 cp s3://bucket/set`` style prefixes work; see launch/README).
    batch_size: items per process (per GPU) per micro-batch. The global batch is
        batch_size x grad_accum x number of processes.
    segment_samples: crop length in samples; a multiple of the codec hop (the codec encodes
        one frame more so that its decoder, which makes ``F * hop - tail`` samples, covers
        the whole crop: :meth:`codec.generator.Codec.frames_for`).
    log_keys: debug aid; each rank appends the (keys, offsets, epochs) of every micro-batch
        it trains on to ``<run_dir>/data_keys_rank{N}.jsonl`` (the multi-process tests use it
        to prove that ranks read disjoint data).
    """

    shards: str = "runs/demo/shards"
    shard_base: str | None = None
    batch_size: int = 16
    segment_samples: int = 16000
    num_workers: int = 2
    crops_per_chunk: int = 4
    seed: int = 0
    log_keys: bool = False
    # The level (LUFS) the model is trained for; None = whatever the manifest says. When
    # set, training and preflight refuse a shard set normalised to another level.
    loudness_target_lufs: float | None = None
    # Undecodable training samples (a corrupt FLAC, the rest of a truncated tar) are skipped,
    # logged once and counted (data/skipped_samples); past this share of the train split's
    # samples a data worker stops the run. 0 = stop at the first one.
    max_bad_sample_fraction: float = 0.01

    def __post_init__(self) -> None:
        _check(
            self.loudness_target_lufs is None or -70 < self.loudness_target_lufs < 0,
            "data.loudness_target_lufs",
            f"must be in (-70, 0) LUFS or null, got {self.loudness_target_lufs}",
        )
        _check(self.batch_size > 0, "data.batch_size", f"must be > 0, got {self.batch_size}")
        _check(
            self.segment_samples > 0,
            "data.segment_samples",
            f"must be > 0, got {self.segment_samples}",
        )
        _check(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        _check(self.crops_per_chunk > 0, "data.crops_per_chunk", "must be > 0")
        _check(
            0.0 <= self.max_bad_sample_fraction < 1.0,
            "data.max_bad_sample_fraction",
            f"must be in [0, 1), got {self.max_bad_sample_fraction}",
        )


@dataclass
class OptimConfig:
    """Optimisers and schedule. Defaults are DAC's published recipe (descript-audio-codec,
    conf/base.yml): AdamW lr 1e-4, betas (0.8, 0.99), ExponentialLR gamma 0.999996 per step,
    gradient clipping 1e3 (generator) and 10 (discriminator).

    fused: AdamW implementation. None = the fused kernel (all parameters in one kernel, the
        step count kept on the device) on CUDA and CPU; False = torch's default (foreach on
        CUDA, a per-tensor loop on CPU). Same maths either way (a test checks equal losses).
    """

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01  # torch AdamW default, which DAC keeps
    lr_decay: float = 0.999996
    grad_clip_g: float = 1000.0
    grad_clip_d: float = 10.0
    grad_accum: int = 1
    fused: bool | None = None
    # Train only the discriminator for the first N optimizer steps (generator frozen: no
    # update, no dead-code reset). For fine-tuning a pretrained generator (model.init_from)
    # beside a fresh discriminator, whose first gradients are noise that would otherwise
    # go straight into the pretrained weights. 0 = train both from the start.
    disc_warmup_steps: int = 0

    def __post_init__(self) -> None:
        _check(
            self.disc_warmup_steps >= 0,
            "optim.disc_warmup_steps",
            f"must be >= 0, got {self.disc_warmup_steps}",
        )
        _check(self.lr_g > 0, "optim.lr_g", f"must be > 0, got {self.lr_g}")
        _check(self.lr_d > 0, "optim.lr_d", f"must be > 0, got {self.lr_d}")
        _check(0 < self.lr_decay <= 1, "optim.lr_decay", "must be in (0, 1]")
        _check(self.grad_accum >= 1, "optim.grad_accum", "must be >= 1")
        _check(len(self.betas) == 2, "optim.betas", "must have two values")


@dataclass
class ValidationConfig:
    """The rank-0 SNR validation hook.

    kbps: bitrates to validate at; each maps to the number of codebooks that gives at most
        that bitrate (and at least one codebook).
    max_items / max_seconds: bound the validation set (full chunks, fixed order).
    every_minutes: also validate once this much wall time has passed since the last
        validation began (None = by steps only). For comparisons at a fixed time budget,
        where step rates differ; checked every step on one process and every
        ``run.agree_every`` steps on several (the ranks agree there, as for run.max_minutes).
    """

    every_steps: int = 500
    every_minutes: float | None = None
    kbps: tuple[float, ...] = (2.0, 4.0, 6.0)
    max_items: int = 32
    max_seconds: float = 300.0
    audio_examples: int = 2

    def __post_init__(self) -> None:
        _check(self.every_steps > 0, "validation.every_steps", "must be > 0")
        _check(len(self.kbps) > 0, "validation.kbps", "must list at least one bitrate")
        _check(all(k > 0 for k in self.kbps), "validation.kbps", "bitrates must be > 0")
        _check(self.max_items > 0, "validation.max_items", "must be > 0")
        _check(
            self.every_minutes is None or self.every_minutes > 0,
            "validation.every_minutes",
            "must be > 0 or null",
        )


@dataclass
class CheckpointConfig:
    every_steps: int = 500
    keep_last: int = 3

    def __post_init__(self) -> None:
        _check(self.every_steps > 0, "checkpoint.every_steps", "must be > 0")
        _check(self.keep_last >= 1, "checkpoint.keep_last", "must be >= 1")


@dataclass
class WandbConfig:
    """Weights & Biases through Accelerate's trackers. mode "auto": online when an API key
    is configured (WANDB_API_KEY or ~/.netrc), otherwise offline (sync later with
    ``wandb sync``)."""

    enabled: bool = True
    project: str = "telucodec"
    entity: str | None = None
    mode: str = "auto"

    def __post_init__(self) -> None:
        _check(
            self.mode in ("auto", "online", "offline", "disabled"),
            "wandb.mode",
            f"must be auto, online, offline or disabled, got {self.mode!r}",
        )


@dataclass
class SnrFloor:
    """Early stop: validation SNR (dB, at the operating bitrate) must reach ``snr_db`` by
    optimizer step ``steps``; a validation at or after that step below it ends the run."""

    steps: int = 0
    snr_db: float = 0.0

    def __post_init__(self) -> None:
        _check(self.steps >= 0, "guard.min_snr_db_after_steps.steps", "must be >= 0")


@dataclass
class GuardConfig:
    """Alarms, the non-finite guard and the early-stop policy (trainer.alarms).

    Alarms go to the console (WARNING), W&B (alert + run summary) and
    ``<run_dir>/alarms.jsonl``; they never stop a run. Thresholds on validation and codebook
    health apply from ``warmup_steps`` on (an untrained codec fails all of them).
    """

    enabled: bool = True
    max_nonfinite_in_a_row: int = 10  # consecutive skipped steps that stop the run
    warmup_steps: int = 2000
    # amplitude: validation RMS ratio (output / input) at the operating bitrate
    rms_ratio_low: float = 0.5  # -6 dB: the user's old runs collapsed to 0.2-0.47
    rms_ratio_high: float = 2.0  # +6 dB
    # SNR (dB at the operating bitrate) below this for `snr_patience` validations in a row
    snr_alarm_db: float = 0.0
    snr_patience: int = 3
    # codebooks: any codebook whose alive share or perplexity / codebook_size is below these
    min_codebook_usage: float = 0.1
    min_codebook_perplexity_frac: float = 0.05
    # discriminator overpowering the generator: at `disc_window` log steps in a row the
    # discriminator loss (summed over sub-discriminators) is below disc_loss_low while the
    # adversarial loss is above adv_loss_high
    disc_loss_low: float = 0.1
    adv_loss_high: float = 5.0
    disc_window: int = 5
    # batch level vs the manifest's loudness target: median RMS (dBFS) of the last
    # `level_window_crops` non-silent crops, compared with target + level_offset_db
    level_offset_db: float = -0.5
    level_tolerance_db: float = 6.0
    level_window_crops: int = 64
    # early stop (null = never)
    min_snr_db_after_steps: SnrFloor | None = None
    # steps before the cost projection (skips start-up and first-step overheads)
    cost_warmup_steps: int = 20

    def __post_init__(self) -> None:
        _check(self.max_nonfinite_in_a_row >= 1, "guard.max_nonfinite_in_a_row", "must be >= 1")
        _check(self.warmup_steps >= 0, "guard.warmup_steps", "must be >= 0")
        _check(
            0 < self.rms_ratio_low < 1 < self.rms_ratio_high,
            "guard.rms_ratio_low",
            f"need 0 < rms_ratio_low < 1 < rms_ratio_high, got {self.rms_ratio_low}, "
            f"{self.rms_ratio_high}",
        )
        _check(self.snr_patience >= 1, "guard.snr_patience", "must be >= 1")
        _check(0 <= self.min_codebook_usage <= 1, "guard.min_codebook_usage", "must be in [0, 1]")
        _check(
            0 <= self.min_codebook_perplexity_frac <= 1,
            "guard.min_codebook_perplexity_frac",
            "must be in [0, 1]",
        )
        _check(self.disc_window >= 1, "guard.disc_window", "must be >= 1")
        _check(self.level_tolerance_db > 0, "guard.level_tolerance_db", "must be > 0")
        _check(self.level_window_crops >= 1, "guard.level_window_crops", "must be >= 1")
        _check(self.cost_warmup_steps >= 1, "guard.cost_warmup_steps", "must be >= 1")


@dataclass
class PreflightConfig:
    """``telucodec-preflight``: overfit one fixed batch from the real shards.

    The recipe is the configured model (quantizer dropout off), precision, mel loss (its
    scales and weight) and VQ losses, plus a waveform L1 term and no GAN, at ``optim.lr_g x lr_multiplier``: one batch
    without adversarial terms tolerates a higher rate, and scaling the configured rate (not
    replacing it) keeps a wrong learning rate visible. Passes when the batch's SNR reaches
    ``min_snr_db`` and its RMS ratio is within ``rms_tolerance`` of 1.
    """

    steps: int = 400
    lr_multiplier: float = 10.0
    # Waveform L1 of speech at -26 LUFS is ~0.02 while 15 x mel is ~15-30: at 1000 the
    # waveform term weighs as much as the mel term, which is what makes the SNR (a waveform
    # measure) climb within a few hundred steps (debug preset: 7-11 dB after 400 steps on
    # real Telugu crops; at 50 it stays below 0 dB).
    waveform_l1_weight: float = 1000.0
    min_snr_db: float = 3.0
    rms_tolerance: float = 0.25  # pass band [0.75, 1.25]
    batch_items: int = 4
    input_gain_db: float = 0.0  # testing aid: gain the batch (e.g. 20 -> beyond the tanh)

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "preflight.steps", "must be >= 1")
        _check(self.lr_multiplier > 0, "preflight.lr_multiplier", "must be > 0")
        _check(self.waveform_l1_weight >= 0, "preflight.waveform_l1_weight", "must be >= 0")
        _check(0 < self.rms_tolerance < 1, "preflight.rms_tolerance", "must be in (0, 1)")
        _check(self.batch_items >= 1, "preflight.batch_items", "must be >= 1")


@dataclass
class ModelConfig:
    """Where the generator's weights start.

    init_from: None (fresh, seeded init) or a pretrained generator: an export folder
        (``telucodec-export``, ``telucodec-import``), DAC's weights file
        (``weights_16khz.pth``) or a Hugging Face DAC folder. Its architecture must equal
        the ``codec`` section's; the discriminator always starts fresh. Applied when a run
        starts at step 0 only: a resumed run continues from its checkpoint and never reads
        this path again (trainer/init_from.py).
    """

    init_from: str | None = None


@dataclass
class ExperimentConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    preflight: PreflightConfig = field(default_factory=PreflightConfig)

    def __post_init__(self) -> None:
        hop = self.codec.hop_length
        _check(
            self.data.segment_samples % hop == 0,
            "data.segment_samples",
            f"{self.data.segment_samples} is not a multiple of the codec hop ({hop} samples)",
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- loading

# Flag names from the user's earlier scripts, accepted so old launch lines keep working;
# each sets every field it names.
ALIASES: dict[str, tuple[str, ...]] = {
    "batch_size": ("data.batch_size",),
    # the old scripts had one learning rate for both optimizers (DAC's recipe uses one too)
    "learning_rate": ("optim.lr_g", "optim.lr_d"),
    "segment_length": ("data.segment_samples",),  # in samples, as the old scripts used it
    "sample_rate": ("codec.sample_rate",),
    "checkpoint_dir": ("run.output_dir",),
    "experiment_name": ("run.name",),
    "use_wandb": ("wandb.enabled",),
    "max_steps": ("run.max_steps",),
}


def _coerce(tp: Any, value: Any, name: str) -> Any:
    """Convert a YAML/CLI value to the annotated field type, naming the field on failure."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config field `{name}`: expected a mapping, got {value!r}")
        return _build(tp, value, name)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, name) for v in value)
        return tuple(_coerce(a, v, name) for a, v in zip(args, value, strict=False))
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return low in ("true", "1", "yes")
            return bool(value)
        if tp is str and isinstance(value, bool):
            # YAML 1.1 reads a bare `no`/`off`/`false` as False (`run.precision=no` on the
            # command line): a str field gets the word back
            return "yes" if value else "no"
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if tp in (int, float, str):
            return tp(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config field `{name}`: cannot read {value!r} as {tp.__name__}") from e
    return value


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - known
    if cls is LossConfig and unknown & set(MEL_RENAMED):
        old = sorted(unknown & set(MEL_RENAMED))[0]
        raise ConfigError(
            f"config field `{prefix}.{old}` is now `{prefix}.{MEL_RENAMED[old]}`: the mel "
            f"settings are one nested section `{prefix}.mel` (used by the loss and validation)"
        )
    if unknown:
        where = f"`{prefix}`" if prefix else "top level"
        raise ConfigError(
            f"unknown config field(s) {sorted(unknown)} in {where}; known: {sorted(known)}"
        )
    kwargs = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        kwargs[key] = _coerce(hints[key], value, name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config section `{prefix or cls.__name__}`: {e}") from e


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override `{dotted}`: `{p}` is not a section")
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """``["data.batch_size=8", "--learning_rate", "3e-4", "--use_wandb"]`` -> nested dict.

    Values are parsed as YAML (so ``8`` is an int, ``[2, 4]`` a list, ``null`` None).
    Old-script flags (``--batch_size 8``) are mapped through :data:`ALIASES`.
    """
    tree: dict = {}
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            key = item[2:]
            if "=" in key:
                key, raw = key.split("=", 1)
            elif (
                i + 1 < len(items) and not items[i + 1].startswith("--") and "=" not in items[i + 1]
            ):
                raw = items[i + 1]
                i += 1
            else:
                raw = "true"  # a bare flag such as --use_wandb
            if key not in ALIASES:
                raise ConfigError(f"unknown option --{key}; known aliases: {sorted(ALIASES)}")
            keys = ALIASES[key]
        elif "=" in item:
            key, raw = item.split("=", 1)
            keys = (key,)
        else:
            raise ConfigError(f"cannot read override {item!r}: expected key=value")
        for key in keys:
            _set_dotted(tree, key, _parse_value(raw))
        i += 1
    return tree


def _parse_value(raw: str) -> Any:
    """YAML, plus the numbers YAML 1.1 reads as strings (``3e-4`` has no dot)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # not YAML (e.g. an unbalanced bracket in a path): take the text as given
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def merge_trees(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, nested dicts merged key by key (later wins)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            merge_trees(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Build the experiment config from a YAML preset plus overrides (later wins)."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        loaded = _read_yaml(p) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p}: top level must be a mapping")
        data = loaded
    data = merge_trees(data, parse_overrides(overrides or []))
    return config_from_dict(data)


def _read_yaml(p: Path) -> Any:
    """The YAML document in ``p``; a syntax error names the file and the line (1-based)."""
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"config file {p}: cannot read it ({reason})") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {p}{where}: not valid YAML ({problem})") from e


def config_from_dict(data: dict) -> ExperimentConfig:
    return _build(ExperimentConfig, data)


def config_to_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML that :func:`load_config` reads back unchanged."""
    return yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(config_to_yaml(cfg))


def _plain(obj: Any) -> Any:
    """Tuples -> lists so the YAML is plain and re-loadable with safe_load."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
