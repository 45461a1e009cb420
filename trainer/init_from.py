"""Start training from a pretrained generator (``model.init_from``) and the discriminator
warm-up (``optim.disc_warmup_steps``).

``model.init_from`` names an export folder, DAC's weights file or a Hugging Face DAC folder
(read by :func:`codec.dac_import.load_pretrained`, strict). Its weights go into the freshly
built generator before Accelerate or DeepSpeed wrap it (a ZeRO optimizer copies the
weights into its fp32 partitions when it is built, so a later load would be overwritten at
the first step); every rank loads the same file, so all start identical. The
discriminator, both optimizers and the schedules start fresh.

Only a run that starts at step 0 does this: a resumed run loads its checkpoint, and the
source may have moved or changed since, so it is never read again.
"""

from __future__ import annotations

import logging

from torch import nn

from codec.dac_convert import architecture_mismatch
from codec.dac_import import load_pretrained
from telucodec.errors import UserInputError
from trainer.config import ConfigError, ExperimentConfig

log = logging.getLogger("telucodec")


def load_init_weights(codec: nn.Module, cfg: ExperimentConfig) -> None:
    """Load ``cfg.model.init_from`` into the (unwrapped, fresh) ``codec``.

    Raises :class:`ConfigError` naming ``model.init_from`` for an unreadable or inconsistent
    source, and the ``codec.*`` field where the source's architecture differs from the
    config's.
    """
    src = cfg.model.init_from
    if not src:
        return
    try:
        pre = load_pretrained(src)
    except UserInputError as e:  # the trainer's CLI reports ConfigErrors as one line
        raise ConfigError(f"config field `model.init_from`: {e}") from e
    diff = architecture_mismatch(cfg.codec, pre.config)
    if diff:
        name, ours, theirs = diff[0]
        raise ConfigError(
            f"config field `codec.{name}`: {ours!r}, but model.init_from {src} has "
            f"{theirs!r}; the codec section must describe the pretrained architecture"
        )
    codec.load_state_dict(pre.state_dict)  # strict: the converter returns every tensor
    log.info(
        "generator initialised from %s (%s, trained at %g LUFS; training continues at the "
        "shards' level); discriminator fresh; quantizer dropout %g (from this config)",
        src,
        pre.kind,
        pre.loudness_target_lufs,
        cfg.codec.quantizer_dropout,
    )
    for note in pre.notes:
        log.info("init_from: %s", note)


def generator_frozen(cfg: ExperimentConfig, step: int) -> bool:
    """True while optimizer step ``step + 1`` (the one about to run after ``step`` done)
    is within the discriminator warm-up: the first ``optim.disc_warmup_steps`` steps."""
    return step < cfg.optim.disc_warmup_steps
