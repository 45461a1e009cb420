"""Typed configs for the codec, its discriminators and its losses.

Each dataclass is checked in ``__post_init__``; a bad value raises ``ValueError`` naming the
field. The model classes never see these objects: :mod:`codec.build` turns them into plain
constructor arguments (the audiocraft convention), so a model can be rebuilt for inference
from the exported config alone.

Defaults are the production ``telugu16k`` preset. Where a value comes from DAC
(descript-audio-codec, Kumar et al. 2023, ``conf/final/16khz.yml``) the comment says so;
where we deviate, the comment says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields


def _check(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{field}: {msg}")


def _check_positive_ints(values: tuple[int, ...], field: str, minimum: int = 1) -> None:
    _check(len(values) > 0, field, "must not be empty")
    for v in values:
        _check(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
            field,
            f"every entry must be an integer >= {minimum}, got {values!r}",
        )


def _as_tuple(value: object) -> tuple:
    # YAML gives lists; dataclass defaults are tuples. Normalise so equality and hashing work.
    return tuple(value) if isinstance(value, list | tuple) else value  # type: ignore[return-value]


@dataclass
class CodecConfig:
    """Generator (encoder -> residual VQ -> decoder) hyper-parameters.

    The frame rate is ``sample_rate / prod(encoder_rates)`` frames per second; each frame
    carries ``n_q`` codes of ``log2(codebook_size)`` bits, so the bitrate with ``n_q``
    codebooks is ``n_q * log2(codebook_size) * frame_rate / 1000`` kbps.
    """

    sample_rate: int = 16000  # Hz; DAC 16 kHz model
    encoder_dim: int = 64  # DAC 16 kHz; channels double at every encoder stride
    encoder_rates: tuple[int, ...] = (2, 4, 5, 8)  # DAC 16 kHz: hop 320 samples = 50 frames/s
    # None -> encoder_dim * 2**len(encoder_rates) (DAC's rule): 1024 for the defaults.
    latent_dim: int | None = None
    decoder_dim: int = 1536  # DAC 16 kHz; channels halve at every decoder stride
    decoder_rates: tuple[int, ...] = (8, 5, 4, 2)  # DAC 16 kHz (mirror of encoder_rates)
    n_codebooks: int = 12  # DAC 16 kHz: 12 x 10 bits x 50 frames/s = 6.0 kbps
    codebook_size: int = 1024  # DAC: 10 bits per code
    codebook_dim: int = 8  # DAC: factorised (low-dimensional) lookup space
    quantizer_dropout: float = 0.5  # DAC 16 kHz recipe: half the items use 1..N codebooks
    # Codebooks used by inference/export when the caller does not say (None = all). The
    # telugu16k preset sets 8 (4 kbps, the default operating point). Not a model
    # argument: the model always serves 1..n_codebooks.
    default_n_quantizers: int | None = None
    # Codebook health (ours; DAC has no dead-code handling). Usage is tracked as an EMA of
    # each code's share of assignments *relative to uniform* (1.0 = used exactly 1/K of the
    # time), so the threshold does not depend on batch size or codebook size. A code used at
    # under 3% of the uniform rate contributes almost nothing to the bitrate's information and
    # is re-initialised from recent encoder residuals.
    dead_code_threshold: float = 0.03
    # EMA decay per training step: a horizon of ~100 steps, long enough to smooth small
    # per-rank batches, short enough that a code unused for ~350 steps counts as dead.
    usage_decay: float = 0.99

    def __post_init__(self) -> None:
        self.encoder_rates = _as_tuple(self.encoder_rates)
        self.decoder_rates = _as_tuple(self.decoder_rates)
        _check(self.sample_rate > 0, "sample_rate", f"must be > 0 Hz, got {self.sample_rate}")
        _check(self.encoder_dim >= 1, "encoder_dim", f"must be >= 1, got {self.encoder_dim}")
        # Stride 1 is refused: with DAC's kernel 2*stride and padding ceil(stride/2) an
        # encoder conv of stride 1 would lengthen its input by one sample, not keep it.
        _check_positive_ints(self.encoder_rates, "encoder_rates", minimum=2)
        _check_positive_ints(self.decoder_rates, "decoder_rates", minimum=2)
        _check(
            math.prod(self.encoder_rates) == math.prod(self.decoder_rates),
            "decoder_rates",
            f"product {math.prod(self.decoder_rates)} must equal the encoder hop "
            f"{math.prod(self.encoder_rates)} (prod of encoder_rates)",
        )
        if self.latent_dim is not None:
            _check(self.latent_dim >= 1, "latent_dim", f"must be >= 1, got {self.latent_dim}")
        div = 2 ** len(self.decoder_rates)
        _check(
            self.decoder_dim >= div and self.decoder_dim % div == 0,
            "decoder_dim",
            f"must be a positive multiple of 2**len(decoder_rates) = {div} (channels halve at "
            f"every decoder stride), got {self.decoder_dim}",
        )
        _check(self.n_codebooks >= 1, "n_codebooks", f"must be >= 1, got {self.n_codebooks}")
        _check(self.codebook_size >= 2, "codebook_size", f"must be >= 2, got {self.codebook_size}")
        _check(self.codebook_dim >= 1, "codebook_dim", f"must be >= 1, got {self.codebook_dim}")
        if self.default_n_quantizers is not None:
            _check(
                1 <= self.default_n_quantizers <= self.n_codebooks,
                "default_n_quantizers",
                f"must be in 1..n_codebooks ({self.n_codebooks}), got {self.default_n_quantizers}",
            )
        _check(
            0.0 <= self.quantizer_dropout <= 1.0,
            "quantizer_dropout",
            f"must be a probability in [0, 1], got {self.quantizer_dropout}",
        )
        _check(
            0.0 <= self.dead_code_threshold < 1.0,
            "dead_code_threshold",
            f"must be in [0, 1) (usage relative to uniform), got {self.dead_code_threshold}",
        )
        _check(
            0.0 < self.usage_decay < 1.0,
            "usage_decay",
            f"must be in (0, 1), got {self.usage_decay}",
        )

    @property
    def resolved_latent_dim(self) -> int:
        """Latent channels: ``latent_dim`` or DAC's ``encoder_dim * 2**len(encoder_rates)``."""
        if self.latent_dim is not None:
            return self.latent_dim
        return self.encoder_dim * 2 ** len(self.encoder_rates)

    @property
    def operating_n_quantizers(self) -> int:
        """Codebooks at the default operating point (``default_n_quantizers`` or all)."""
        return self.default_n_quantizers or self.n_codebooks

    @property
    def hop_length(self) -> int:
        """Samples per code frame (product of the encoder strides)."""
        return math.prod(self.encoder_rates)

    @property
    def frame_rate(self) -> float:
        """Code frames per second (Hz)."""
        return self.sample_rate / self.hop_length

    @property
    def bits_per_codebook(self) -> float:
        """Bits per code: ``log2(codebook_size)`` (10.0 for 1024 entries)."""
        return math.log2(self.codebook_size)

    def bitrate_kbps(self, n_q: int | None = None) -> float:
        """Bitrate in kbps when the first ``n_q`` codebooks are used (all when None)."""
        n_q = self.n_codebooks if n_q is None else n_q
        if not 1 <= n_q <= self.n_codebooks:
            raise ValueError(f"n_q: must be in 1..{self.n_codebooks}, got {n_q}")
        return n_q * self.bits_per_codebook * self.frame_rate / 1000.0

    def n_quantizers_for_kbps(self, kbps: float) -> int:
        """Most codebooks whose bitrate does not exceed ``kbps``.

        Raises ``ValueError`` when even one codebook exceeds it or when ``kbps`` is above the
        model's full bitrate (so a validation schedule asking for 6 kbps of a 1.2 kbps model
        fails loudly instead of silently measuring something else).
        """
        per_codebook = self.bitrate_kbps(1)
        n_q = int(math.floor(kbps / per_codebook + 1e-9))
        if n_q < 1 or n_q > self.n_codebooks:
            raise ValueError(
                f"kbps: {kbps} kbps is outside this codec's range "
                f"{per_codebook:g}..{self.bitrate_kbps():g} kbps"
            )
        return n_q

    def summary(self) -> str:
        """One line with the implied frame rate and bitrates, for logs and the CLI."""
        return (
            f"{self.sample_rate} Hz, hop {self.hop_length} samples "
            f"({self.frame_rate:g} frames/s), latent {self.resolved_latent_dim}, "
            f"{self.n_codebooks} codebooks x {self.codebook_size} entries "
            f"({self.bits_per_codebook:g} bits): {self.bitrate_kbps(1):g} kbps per codebook, "
            f"{self.bitrate_kbps():g} kbps with all {self.n_codebooks}; operating point "
            f"{self.operating_n_quantizers} codebooks = "
            f"{self.bitrate_kbps(self.operating_n_quantizers):g} kbps"
        )


# DAC's relative frequency bands for the complex-STFT discriminator (fractions of the
# one-sided spectrum); relative, so they apply unchanged at 16 kHz.
DAC_BANDS: tuple[tuple[float, float], ...] = (
    (0.0, 0.1),
    (0.1, 0.25),
    (0.25, 0.5),
    (0.5, 0.75),
    (0.75, 1.0),
)


MIN_BAND_BINS = 9  # see DiscriminatorConfig.__post_init__


@dataclass
class DiscriminatorConfig:
    """Multi-period + multi-resolution multi-band complex-STFT discriminator."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)  # DAC / HiFi-GAN MPD periods (in samples)
    # DAC uses windows 2048/1024/512 (46/23/12 ms at 44.1 kHz) and its 16 kHz recipe keeps
    # those sample counts, which at 16 kHz span 128/64/32 ms: the finest view then misses
    # plosive onsets and other short speech transients. We halve them so the windows cover
    # 64/32/16 ms, close to the durations DAC was designed around, and the STFT costs less.
    fft_sizes: tuple[int, ...] = (1024, 512, 256)
    hop_factor: float = 0.25  # DAC: hop = window / 4
    bands: tuple[tuple[float, float], ...] = DAC_BANDS
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)  # DAC MPD conv widths
    stft_channels: int = 32  # DAC MRD conv width
    # DAC removes DC before discriminating: keep (DC is inaudible, the mel loss covers it).
    remove_dc: bool = True
    # DAC also peak-normalises every clip to 0.8 before the discriminators. We do not by
    # default: long recordings give training segments that are mostly pause, and peak
    # normalisation would blow their noise floor up to speech level; the prep step already
    # makes levels consistent (loudness-normalised, peak-safe).
    peak_normalize: bool = False

    def __post_init__(self) -> None:
        self.periods = _as_tuple(self.periods)
        self.fft_sizes = _as_tuple(self.fft_sizes)
        self.mpd_channels = _as_tuple(self.mpd_channels)
        self.bands = tuple(_as_tuple(b) for b in _as_tuple(self.bands))
        _check_positive_ints(self.periods, "periods", minimum=1)
        _check_positive_ints(self.fft_sizes, "fft_sizes", minimum=16)
        _check_positive_ints(self.mpd_channels, "mpd_channels", minimum=1)
        _check(
            0.0 < self.hop_factor <= 1.0,
            "hop_factor",
            f"must be in (0, 1], got {self.hop_factor}",
        )
        _check(self.stft_channels >= 1, "stft_channels", f"must be >= 1, got {self.stft_channels}")
        _check(len(self.bands) > 0, "bands", "must not be empty")
        for b in self.bands:
            _check(
                len(b) == 2 and 0.0 <= b[0] < b[1] <= 1.0,
                "bands",
                f"every band must be (lo, hi) with 0 <= lo < hi <= 1, got {b!r}",
            )
        # Each band goes through three stride-2 convolutions along frequency (ceil(w / 2)
        # each), so a band needs >= MIN_BAND_BINS bins to keep at least two frequency columns.
        # Narrower bands collapse to a single column, where the 9-wide kernels see nothing
        # but padding, and where oneDNN's bf16 conv backward on CPU (torch 2.11) returns
        # NaN gradients now and then (seen with the 128-point window: 6-bin lowest band).
        n_bins = min(self.fft_sizes) // 2 + 1
        for lo, hi in self.bands:
            width = int(hi * n_bins) - int(lo * n_bins)
            _check(
                width >= MIN_BAND_BINS,
                "bands",
                f"band ({lo}, {hi}) holds {width} bins at the smallest fft size "
                f"{min(self.fft_sizes)}; need >= {MIN_BAND_BINS} (use larger fft_sizes)",
            )


@dataclass
class MelSpec:
    """The multi-scale log-mel distance: what the generator's mel loss trains and what
    validation's and eval's ``mel_distance`` measure (one definition, so "best" ranks by the
    mel that is trained).

    Per scale ``(window, n_mels)``: a magnitude mel with a Hann window of ``window`` samples
    and hop ``window * hop_factor``; the distance is ``log_weight * mean|log10(clamp(M_est,
    clamp_eps)^pow) - log10(clamp(M_ref, clamp_eps)^pow)| + mag_weight * mean|M_est - M_ref|``,
    summed over scales. Defaults: DAC's 16 kHz recipe (``MelSpectrogramLoss.*``).
    """

    # DAC's 16 kHz model keeps the 44.1 kHz windows; at 16 kHz they span 2..128 ms and every
    # mel filter still covers at least one FFT bin (checked by tests), so no rescaling.
    n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    window_lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)  # samples
    hop_factor: float = 0.25  # audiotools STFTParams default: hop = window / 4
    clamp_eps: float = 1e-5  # DAC: clamp the mel magnitude before log10
    pow: float = 1.0  # DAC 16 kHz: log10 of magnitude (not power) mel
    log_weight: float = 1.0  # DAC default
    mag_weight: float = 0.0  # DAC 16 kHz recipe: no linear-magnitude term
    fmin: float = 0.0  # Hz; DAC
    fmax: float | None = None  # Hz; None = Nyquist (DAC)

    def __post_init__(self) -> None:
        self.n_mels = _as_tuple(self.n_mels)
        self.window_lengths = _as_tuple(self.window_lengths)
        for name in ("log_weight", "mag_weight"):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and math.isfinite(value) and value >= 0,
                f"mel.{name}",
                f"must be a finite number >= 0, got {value!r}",
            )
        _check_positive_ints(self.n_mels, "mel.n_mels")
        _check_positive_ints(self.window_lengths, "mel.window_lengths", minimum=4)
        _check(
            len(self.n_mels) == len(self.window_lengths),
            "mel.n_mels",
            f"needs one entry per mel.window_lengths entry ({len(self.window_lengths)}), "
            f"got {len(self.n_mels)}",
        )
        _check(
            0.0 < self.hop_factor <= 1.0,
            "mel.hop_factor",
            f"must be in (0, 1], got {self.hop_factor}",
        )
        _check(self.clamp_eps > 0, "mel.clamp_eps", f"must be > 0, got {self.clamp_eps}")
        _check(self.pow > 0, "mel.pow", f"must be > 0, got {self.pow}")
        _check(self.fmin >= 0, "mel.fmin", f"must be >= 0 Hz, got {self.fmin}")
        if self.fmax is not None:
            _check(
                self.fmax > self.fmin,
                "mel.fmax",
                f"must be > mel.fmin ({self.fmin} Hz), got {self.fmax}",
            )


# The flat loss keys the mel spec replaced, for a config error that names the new key.
MEL_RENAMED: dict[str, str] = {f"mel_{f.name}": f"mel.{f.name}" for f in fields(MelSpec)}


@dataclass
class LossConfig:
    """Generator loss weights and spectral-loss settings (discriminator loss is fixed LSGAN)."""

    # Weights: DAC 16 kHz recipe `lambdas` (mel/loss, adv/feat_loss, adv/gen_loss,
    # vq/codebook_loss, vq/commitment_loss).
    mel_weight: float = 15.0
    feature_matching_weight: float = 2.0
    adversarial_weight: float = 1.0
    codebook_weight: float = 1.0
    commitment_weight: float = 0.25
    # Optional extras, off in DAC's recipe. Waveform L1 pulls towards the exact waveform; early
    # in training, while phase is still wrong, it rewards turning the level down (the RMS
    # collapse seen in the user's old runs), so it stays off unless asked for.
    waveform_l1_weight: float = 0.0
    stft_weight: float = 0.0  # multi-resolution STFT loss (Parallel WaveGAN), off in DAC
    # The multi-scale mel: the one definition the loss trains and validation ranks by.
    mel: MelSpec = field(default_factory=MelSpec)
    # Multi-resolution STFT loss (spectral convergence + log magnitude): Parallel WaveGAN
    # (Yamamoto et al. 2020) resolutions, which at 16 kHz span 15..75 ms windows.
    stft_fft_sizes: tuple[int, ...] = (512, 1024, 2048)
    stft_hop_sizes: tuple[int, ...] = (50, 120, 240)
    stft_win_lengths: tuple[int, ...] = (240, 600, 1200)

    def __post_init__(self) -> None:
        for name in (
            "stft_fft_sizes",
            "stft_hop_sizes",
            "stft_win_lengths",
        ):
            setattr(self, name, _as_tuple(getattr(self, name)))
        for name in (
            "mel_weight",
            "feature_matching_weight",
            "adversarial_weight",
            "codebook_weight",
            "commitment_weight",
            "waveform_l1_weight",
            "stft_weight",
        ):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and math.isfinite(value) and value >= 0,
                name,
                f"must be a finite number >= 0, got {value!r}",
            )
        if isinstance(self.mel, dict):
            self.mel = MelSpec(**self.mel)
        _check(isinstance(self.mel, MelSpec), "mel", f"must be a MelSpec, got {self.mel!r}")
        _check_positive_ints(self.stft_fft_sizes, "stft_fft_sizes", minimum=4)
        _check_positive_ints(self.stft_hop_sizes, "stft_hop_sizes")
        _check_positive_ints(self.stft_win_lengths, "stft_win_lengths")
        n = len(self.stft_fft_sizes)
        for name in ("stft_hop_sizes", "stft_win_lengths"):
            _check(
                len(getattr(self, name)) == n,
                name,
                f"needs one entry per stft_fft_sizes entry ({n})",
            )
        for fft, win in zip(self.stft_fft_sizes, self.stft_win_lengths, strict=True):
            _check(
                win <= fft,
                "stft_win_lengths",
                f"window {win} is longer than its fft size {fft}",
            )
