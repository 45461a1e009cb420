"""One GAN optimizer step: the code the training loop runs and the performance harness
times (``benchmarks/bench_step.py``), so a benchmarked step is exactly a trained step.

Per micro-batch:

1. generator forward (autocast in the configured precision; every STFT/mel inside the
   codec's losses and discriminator runs in fp32 regardless);
2. discriminator loss on real and generated audio, evaluated in one batched call (one
   launch per layer instead of two; the halves are split afterwards), back-propagated;
   after the last micro-batch the discriminator steps;
3. generator loss: mel + adversarial + feature matching + codebook + commitment, with the
   discriminator (just updated) evaluated on real and generated audio in one call,
   back-propagated into the generator's parameters only.

Then the generator steps (clip, skip if non-finite, zero, both LR schedules). This is DAC's
order. No ``.item()`` or other host sync here beyond the non-finite guard's two reads of a
0-d tensor (see :mod:`trainer.engine`); losses come back as device tensors and are only
read at log steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from codec.build import build_codec, build_discriminator, build_generator_loss
from codec.losses import discriminator_loss
from trainer.config import ExperimentConfig
from trainer.engine import GanEngine, build_engine
from trainer.init_from import load_init_weights


@dataclass
class StepResult:
    loss_d: torch.Tensor  # 0-d, last micro-batch, detached
    loss_g: torch.Tensor  # 0-d, last micro-batch, detached
    terms: dict[str, torch.Tensor]  # the generator loss's named terms, last micro-batch
    gnorm_g: torch.Tensor | float
    gnorm_d: torch.Tensor
    ok_g: bool  # the generator's update was applied (finite gradients)
    ok_d: bool

    @property
    def applied(self) -> bool:
        return self.ok_g and self.ok_d


def split_halves(d_out):
    """Discriminator output on cat([real, fake]) -> (outputs on real, outputs on fake)."""
    real = [[f.chunk(2, dim=0)[0] for f in maps] for maps in d_out]
    fake = [[f.chunk(2, dim=0)[1] for f in maps] for maps in d_out]
    return real, fake


def gan_step(
    eng: GanEngine,
    loss_fn: nn.Module,
    micro_batches: Iterable[torch.Tensor],
    grad_accum: int,
    train_gen: bool = True,
) -> StepResult:
    """Run one optimizer step over ``grad_accum`` micro-batches.

    ``micro_batches`` yields waveforms ``(B, 1, T)`` on the device, lazily (the training
    loop fetches each from its loader only when it is needed). ``train_gen=False``
    (discriminator warm-up, ``optim.disc_warmup_steps``): the generator runs without
    gradients and is not updated; its loss terms are still computed, for the logs.
    """
    it = iter(micro_batches)
    gnorm_d, ok_d = None, True
    for micro in range(grad_accum):
        last = micro == grad_accum - 1
        x = next(it)
        with eng.gen_accumulating(last):
            with eng.autocast(), torch.set_grad_enabled(train_gen):
                out = eng.gen(x)
            y = out.audio
            with eng.disc_accumulating(last):
                with eng.autocast():
                    d_real, d_fake = split_halves(eng.disc(torch.cat([x, y.detach()])))
                loss_d = discriminator_loss(d_real, d_fake)
                eng.backward_disc(loss_d / grad_accum)
            if last:
                gnorm_d, ok_d = eng.step_disc()
            with eng.generator_pass(), torch.set_grad_enabled(train_gen):
                with eng.autocast():
                    d_real, d_fake = split_halves(eng.disc(torch.cat([x, y])))
                loss_g, terms = loss_fn(x, y, out, d_real, d_fake)
                if train_gen:
                    eng.backward_gen(loss_g / grad_accum, last)
    if train_gen:
        gnorm_g, ok_g = eng.step_gen()
    else:  # frozen: no update; the schedules still advance, a function of the step number
        with warnings.catch_warnings():
            # torch warns once that the generator's optimizer has not stepped yet: expected
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step")
            eng.sched_g.step()
        eng.sched_d.step()
        gnorm_g, ok_g = 0.0, True
    return StepResult(loss_d.detach(), loss_g.detach(), terms, gnorm_g, gnorm_d, ok_g, ok_d)


def build_step_objects(
    acc: Accelerator, cfg: ExperimentConfig, init_generator: bool = False
) -> tuple[GanEngine, nn.Module]:
    """The engine (both models, optimisers, schedules; compiled per ``run.compile``) and the
    generator loss that :func:`gan_step` needs, exactly as the training loop builds them.

    Seeds the global RNGs with ``run.seed`` first, so every rank (and every benchmark run)
    starts from identical weights. ``init_generator``: load ``model.init_from`` into the
    generator before it is wrapped (a run starting at step 0; trainer/init_from.py).
    """
    set_seed(cfg.run.seed)
    sr = cfg.codec.sample_rate
    gen, disc = build_codec(cfg.codec), build_discriminator(cfg.discriminator, sr)
    if init_generator:
        load_init_weights(gen, cfg)
    loss_fn = build_generator_loss(cfg.loss, sr).to(acc.device)
    return build_engine(acc, cfg, gen, disc), loss_fn  # DDP, or the generator in DeepSpeed
