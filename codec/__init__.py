"""The codec: generator (encoder -> residual VQ -> decoder), discriminators, losses, metrics.

Model code only: nothing here knows about Accelerate, ranks, precision policy or
checkpoints. Configs live in :mod:`codec.config`; :mod:`codec.build` turns them into
modules that take plain arguments.
"""

from codec.build import (
    build_codec,
    build_discriminator,
    build_generator_loss,
    build_mel_loss,
    count_parameters,
)
from codec.config import CodecConfig, DiscriminatorConfig, LossConfig, MelSpec
from codec.discriminators import Discriminator
from codec.generator import Codec, CodecOutput
from codec.losses import GeneratorLoss
from codec.quantizer import ResidualVectorQuantizer

__all__ = [
    "Codec",
    "CodecConfig",
    "CodecOutput",
    "Discriminator",
    "DiscriminatorConfig",
    "GeneratorLoss",
    "LossConfig",
    "MelSpec",
    "ResidualVectorQuantizer",
    "build_codec",
    "build_discriminator",
    "build_generator_loss",
    "build_mel_loss",
    "count_parameters",
]
