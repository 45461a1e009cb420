"""The generator: DAC-style encoder -> residual VQ -> decoder, with plain constructor args.

Shapes: audio ``[B, 1, T]`` (samples, nominally in [-1, 1]); latents ``[B, D, F]``; codes
``[B, n_q, F]``; ``F`` frames decode to ``F * hop - tail`` samples (:meth:`Codec.frames_for`
gives the ``F`` that covers ``T``). The model knows nothing of configs, devices, precision
or ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.layers import ResidualUnit, Snake, WNConv1d, downsample_conv, upsample_conv
from codec.quantizer import ResidualVectorQuantizer
from codec.spectral import no_autocast

DILATIONS = (1, 3, 9)  # DAC / SoundStream residual-unit dilations


class EncoderBlock(nn.Module):
    """Three residual units at ``dim // 2`` channels, then a strided conv to ``dim``."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            *[ResidualUnit(dim // 2, dilation=d) for d in DILATIONS],
            Snake(dim // 2),
            downsample_conv(dim // 2, dim, stride),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class Encoder(nn.Module):
    """``[B, 1, T] -> [B, d_latent, T / prod(strides)]``; channels double at every stride."""

    def __init__(self, d_model: int, strides: tuple[int, ...], d_latent: int):
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(1, d_model, kernel_size=7, padding=3)]
        for stride in strides:
            d_model *= 2
            layers.append(EncoderBlock(d_model, stride))
        layers += [Snake(d_model), WNConv1d(d_model, d_latent, kernel_size=3, padding=1)]
        self.block = nn.Sequential(*layers)
        self.enc_dim = d_model

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class DecoderBlock(nn.Module):
    """Snake, transposed conv up by ``stride``, then three residual units."""

    def __init__(self, input_dim: int, output_dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake(input_dim),
            upsample_conv(input_dim, output_dim, stride),
            *[ResidualUnit(output_dim, dilation=d) for d in DILATIONS],
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class Decoder(nn.Module):
    """``[B, input_channel, F] -> [B, d_out, F * prod(rates) - decoder_shortfall(rates)]`` in
    (-1, 1).

    Channels halve at every stride (``channels / 2**i``). Ends like DAC:
    Snake -> conv k7 -> Tanh. Tanh bounds the output to the range the prep command
    guarantees for inputs (peak-safe), so input and output ranges match by construction.

    The last conv and the Tanh run in fp32 with autocast off: under bf16 autocast the
    waveform would otherwise be rounded to bf16 (8 bits of mantissa, about -48 dB of
    relative error) before the fp32 losses and the STFT discriminator see it. The cost is
    one conv to one channel. (A decoder whose weights were cast to bf16 for inference,
    ``infer.fast``, keeps running them in bf16.)
    """

    def __init__(self, input_channel: int, channels: int, rates: tuple[int, ...], d_out: int = 1):
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(input_channel, channels, kernel_size=7, padding=3)]
        output_dim = channels
        for i, stride in enumerate(rates):
            input_dim = channels // 2**i
            output_dim = channels // 2 ** (i + 1)
            layers.append(DecoderBlock(input_dim, output_dim, stride))
        layers += [
            Snake(output_dim),
            WNConv1d(output_dim, d_out, kernel_size=7, padding=3),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        *body, conv, tanh = self.model
        for layer in body:
            x = layer(x)
        # in the weights' own dtype: fp32 in training, bf16 where inference cast the decoder
        dtype = next(conv.parameters()).dtype
        with no_autocast(x.device):
            return tanh(conv(x.to(dtype)))


@dataclass
class CodecOutput:
    """What :meth:`Codec.forward` returns.

    audio: ``[B, 1, T]`` reconstruction, cropped to the input length.
    codes: ``[B, n, F]`` long; ``n`` = all codebooks in training (items that quantizer dropout
        cut short still carry codes for the unused stages), else the number requested.
    z: ``[B, latent_dim, F]`` quantised latent fed to the decoder.
    latents: ``[B, latent_dim, F]`` continuous encoder output before quantisation.
    commitment_loss, codebook_loss: scalars (fp32), summed over stages, averaged over items.
    n_quantizers_used: ``[B]`` long, codebooks each item's reconstruction used.
    """

    audio: Tensor
    codes: Tensor
    z: Tensor
    latents: Tensor
    commitment_loss: Tensor
    codebook_loss: Tensor
    n_quantizers_used: Tensor


def _init_weights(module: nn.Module) -> None:
    # DAC calls trunc_normal_(std=0.02) on every Conv1d weight, but with weight norm that
    # writes into a derived tensor that is recomputed from (g, v) on the next forward, so
    # DAC in fact trains from PyTorch's default init with zero conv biases. We reproduce that
    # behaviour on purpose (it is what DAC's published results were trained with).
    if isinstance(module, nn.Conv1d) and module.bias is not None:
        nn.init.zeros_(module.bias)


def decoder_shortfall(decoder_rates: tuple[int, ...]) -> int:
    """Samples by which the decoder's output falls short of ``frames * hop``.

    Each upsampling layer maps ``L`` to ``L * r - r % 2`` (:func:`codec.layers.upsample_conv`,
    DAC's layer), and a position missing after layer ``i`` is ``prod(r[i+1:])`` samples at
    the output; so the shortfall is ``sum(r_i % 2 * prod(r[i+1:]))`` whatever ``F``: 8 for
    DAC's 16 kHz rates (8, 5, 4, 2), as DAC's own decoder gives ``320 F - 8``.
    """
    return sum(r % 2 * math.prod(decoder_rates[i + 1 :]) for i, r in enumerate(decoder_rates))


class Codec(nn.Module):
    """Encoder -> residual VQ -> decoder (DAC family).

    Args (all plain values): ``sample_rate`` (Hz, recorded for export), ``encoder_dim``,
    ``encoder_rates`` (strides; their product is the hop in samples), ``latent_dim`` (None ->
    ``encoder_dim * 2**len(encoder_rates)``), ``decoder_dim``, ``decoder_rates`` (product must
    equal the hop), RVQ settings (see :class:`ResidualVectorQuantizer`).
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        encoder_dim: int,
        encoder_rates: tuple[int, ...],
        latent_dim: int | None,
        decoder_dim: int,
        decoder_rates: tuple[int, ...],
        n_codebooks: int,
        codebook_size: int,
        codebook_dim: int,
        quantizer_dropout: float,
        dead_code_threshold: float = 0.03,
        usage_decay: float = 0.99,
    ):
        super().__init__()
        if math.prod(encoder_rates) != math.prod(decoder_rates):
            raise ValueError(
                f"decoder_rates: product {math.prod(decoder_rates)} != encoder hop "
                f"{math.prod(encoder_rates)}"
            )
        if latent_dim is None:
            latent_dim = encoder_dim * 2 ** len(encoder_rates)
        self.sample_rate = sample_rate
        self.hop_length = math.prod(encoder_rates)
        self.latent_dim = latent_dim
        self.encoder = Encoder(encoder_dim, tuple(encoder_rates), latent_dim)
        self.quantizer = ResidualVectorQuantizer(
            input_dim=latent_dim,
            n_codebooks=n_codebooks,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            quantizer_dropout=quantizer_dropout,
            dead_code_threshold=dead_code_threshold,
            usage_decay=usage_decay,
        )
        self.decoder = Decoder(latent_dim, decoder_dim, tuple(decoder_rates))
        self.tail = decoder_shortfall(decoder_rates)
        self.apply(_init_weights)

    @property
    def n_codebooks(self) -> int:
        return self.quantizer.n_codebooks

    def decoded_length(self, frames: int) -> int:
        """Samples the decoder makes from ``frames`` code frames: ``frames * hop - tail``
        (``tail``: see :func:`decoder_shortfall`; 8 for the 16 kHz model, 0 for 44.1 kHz)."""
        return max(0, frames * self.hop_length - self.tail)

    def frames_for(self, samples: int) -> int:
        """Code frames needed for the decoder to cover ``samples`` input samples: ``ceil((T
        + tail) / hop)``. One more than ``ceil(T / hop)`` only when ``T`` ends within
        ``tail`` samples of a frame boundary."""
        return -(-(samples + self.tail) // self.hop_length) if samples > 0 else 0

    def _pad(self, audio: Tensor, cover: bool) -> Tensor:
        """Zero-pad ``[B, 1, T]`` on the right to whole frames: :meth:`frames_for` ``(T)``
        when ``cover`` (the decoder's output then covers ``T``), else ``ceil(T / hop)``."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio: expected shape [B, 1, T], got {tuple(audio.shape)}")
        length = audio.shape[-1]
        frames = self.frames_for(length) if cover else -(-length // self.hop_length)
        right = frames * self.hop_length - length
        return F.pad(audio, (0, right)) if right else audio

    def forward(self, audio: Tensor, n_quantizers: int | None = None) -> CodecOutput:
        """Reconstruct ``audio`` ``[B, 1, T]``.

        ``T`` is zero-padded on the right to :meth:`frames_for` ``(T)`` whole frames, so the
        decoder's output covers ``T``, and the output is cropped back to ``T``. In training
        mode with ``n_quantizers=None``, quantizer dropout applies (see
        :class:`ResidualVectorQuantizer`); an explicit ``n_quantizers`` always wins.
        """
        length = audio.shape[-1]
        latents = self.encoder(self._pad(audio, cover=True))
        q = self.quantizer(latents, n_quantizers)
        out = self.decoder(q.z)[..., :length]
        return CodecOutput(
            audio=out,
            codes=q.codes,
            z=q.z,
            latents=latents,
            commitment_loss=q.commitment_loss,
            codebook_loss=q.codebook_loss,
            n_quantizers_used=q.n_quantizers_used,
        )

    @torch.no_grad()
    def encode(self, audio: Tensor, n_quantizers: int | None = None) -> tuple[Tensor, Tensor]:
        """Codes ``[B, n_q, F]`` (long) and continuous latents ``[B, latent_dim, F]``.

        Never applies quantizer dropout, whatever the module mode. ``F = ceil(T / hop)``, as
        DAC encodes, so the codes equal DAC's for imported weights; :meth:`decode` then
        gives ``decoded_length(F)`` samples, up to ``tail`` fewer than ``T``. To get all of
        ``T`` back, pad the input to :meth:`frames_for` ``(T)`` frames first (as
        :meth:`forward` and inference do).
        """
        latents = self.encoder(self._pad(audio, cover=False))
        codes = self.quantizer.quantize(latents, n_quantizers)
        return codes, latents

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Audio ``[B, 1, decoded_length(F)]`` from codes ``[B, n_q, F]`` (``1 <= n_q <= N``)."""
        return self.decoder(self.quantizer.from_codes(codes))
