"""The two models, their optimisers and their optimizer steps, behind one interface for
plain DDP (also one process) and for DeepSpeed ZeRO stage 1/2.

The training loop calls the same methods whichever path runs::

    with eng.gen_accumulating(last):            # DDP: no gradient all-reduce before the last micro-batch
        out = eng.gen(x)
        with eng.disc_accumulating(last):
            loss_d = ...eng.disc(...)
            eng.backward_disc(loss_d / accum)
        if last: gnorm_d, ok_d = eng.step_disc()
        with eng.generator_pass():              # disc params get no gradient from the G loss
            loss_g = ...eng.disc(...)
            eng.backward_gen(loss_g / accum, last)
    gnorm_g, ok_g = eng.step_gen()              # clip, step, zero, both LR schedules

Non-finite guard
    ``step_disc``/``step_gen`` return ``(grad_norm, applied)``. The norm from clipping is
    checked with ``torch.isfinite`` before the optimizer step; when it is NaN/Inf the step is
    skipped (gradients zeroed, weights and optimizer moments untouched) and ``applied`` is
    False. A non-finite loss makes the gradients non-finite, so the norm covers both; the
    norm is taken after DDP's all-reduce, so every rank takes the same decision. Cost: one
    host sync per model per step (reading a 0-d tensor; the backward must have finished,
    which the optimizer step waits for anyway), measured at well under 1% of a GAN step.
    With fp16 the grad scaler (Accelerate) skips overflowing steps itself and lowers its
    scale; the optimizer step is still called so the scaler can do that, and the step is
    reported as skipped. Under DeepSpeed ZeRO 1/2 the engine's optimizer checks the global
    norm itself and skips (DeepSpeed >= 0.16, also in fp32); we read its verdict and refuse
    to go on if it ever applied a non-finite step. Stage 0 (no ZeRO optimizer) is checked
    here before ``engine.step``.
    The learning-rate schedules still advance on a skipped step (as with AMP's scaler), so
    the schedule stays a function of the step number.

Performance switches (``run.compile``, ``run.cudnn_benchmark``, ``optim.fused``)
    ``torch.compile`` wraps the prepared generator and discriminator *after*
    ``accelerate.prepare`` (so a DDP module is compiled with DDP's graph splitting at bucket
    boundaries, and checkpoints, ``unwrap_model`` and validation keep seeing the eager
    modules and their unprefixed ``state_dict`` keys). Under DeepSpeed the engine compiles
    its module in place (``DeepSpeedEngine.compile``). cuDNN benchmark mode is set by
    :func:`build_accelerator` for CUDA runs. Fused AdamW is chosen by :func:`use_fused_adamw`.
    Each switch's measured effect is in BENCHMARKS.md (``benchmarks/bench_step.py``).

Why DeepSpeed holds only the generator
    One Accelerator holds one DeepSpeed engine, and a generator loss that back-propagates
    through a second engine is a known failure (DeepSpeed issues #399, #4923). So under
    DeepSpeed the generator (the big model, whose optimizer state ZeRO partitions) is the
    engine, and the discriminator stays a plain module with torch DDP, its own AdamW and
    ExponentialLR, registered with ``accelerator.register_for_checkpointing`` so
    ``save_state``/``load_state`` cover it. ``engine.backward`` has no ``inputs=``, so during
    the generator pass the discriminator's parameters are switched to
    ``requires_grad=False``: the adversarial and feature-matching losses still flow through
    the discriminator into the generator, but leave no gradient in the discriminator (which
    under gradient accumulation holds the D-loss gradients of earlier micro-batches).

    Precision: the DeepSpeed JSON keeps ``bf16``/``fp16`` off and this module runs
    ``torch.autocast`` itself, exactly as on the DDP path, so weights and optimizer state are
    fp32 on both paths and the codec's fp32 STFT islands behave the same. fp16 is refused
    under DeepSpeed (it would need DeepSpeed's loss scaler, which knows one engine only).

    ZeRO stage 3 is refused: validation runs the generator on rank 0 alone, and a ZeRO-3
    forward all-gathers parameters from every rank, so it would hang; the quantizer also
    reads codebook weights outside their module's forward, which ZeRO-3 does not gather.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from datetime import timedelta

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    InitProcessGroupKwargs,
)
from torch import nn

from telucodec.errors import UserInputError
from trainer.config import ConfigError, ExperimentConfig
from trainer.distributed import replace_dead_codes

log = logging.getLogger("telucodec")


class LaunchMismatch(UserInputError):
    """The processes the launcher started and the setup Accelerate formed disagree (a world
    of 1 where the launcher started 2, DDP where the launch file asked for DeepSpeed): the
    run would train, but not as asked, so it stops before step 1."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def use_deepspeed_env() -> bool:
    """``accelerate launch`` with a DeepSpeed config exports ACCELERATE_USE_DEEPSPEED."""
    return _env_flag("ACCELERATE_USE_DEEPSPEED")


def dist_timeout(cfg: ExperimentConfig) -> timedelta:
    """The process-group timeout: ``run.dist_timeout_minutes``, or (None) 4 minutes per
    minute of validation audio and at least 30, since rank 0 validates while the others wait
    in a barrier."""
    minutes = cfg.run.dist_timeout_minutes
    if minutes is None:
        minutes = max(30.0, cfg.validation.max_seconds / 60.0 * 4)
    return timedelta(minutes=minutes)


def check_launch(acc: Accelerator, deepspeed_asked: bool) -> None:
    """Refuse a run whose distributed setup is not the one its launcher asked for.

    Two silent failures seen in practice: a DeepSpeed launch file with ACCELERATE_USE_CPU=1
    in the environment trains plain DDP (Accelerate's CPU switch wins over the DeepSpeed
    plugin; :func:`build_accelerator` names that cause before building), and processes that
    the launcher started as one world each train alone when no process group forms
    (WORLD_SIZE says N, Accelerate says 1).
    """
    if deepspeed_asked and acc.distributed_type != DistributedType.DEEPSPEED:
        raise LaunchMismatch(
            "the launch asked for DeepSpeed (ACCELERATE_USE_DEEPSPEED=true) but Accelerate set "
            f"up {acc.distributed_type.value}"
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != acc.num_processes:
        raise LaunchMismatch(
            f"the launcher started a world of {world} processes (WORLD_SIZE) but Accelerate "
            f"formed a group of {acc.num_processes}: each process would train alone. On CPU set "
            "`use_cpu: true` in the launch file, ACCELERATE_USE_CPU=1, or run.cpu=true"
        )


def resolve_precision(cfg: ExperimentConfig, on_cpu: bool) -> str:
    """``run.precision`` with ``auto`` resolved: "bf16", "fp16" or "no" (fp32)."""
    p = cfg.run.precision
    if p == "auto":
        p = "no" if on_cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    if on_cpu and p == "fp16":
        raise ConfigError("config field `run.precision`: fp16 needs a GPU; use bf16 or no on CPU")
    if p == "fp16" and cfg.optim.grad_accum > 1:
        # Both optimizers share Accelerate's one loss scaler, which updates its scale at the
        # discriminator's step: that falls between the generator's micro-batches (DAC's
        # order), so earlier micro-batches' gradients would be unscaled with another factor
        # than they were scaled with. Refused rather than trained wrong.
        raise ConfigError(
            f"config field `optim.grad_accum`: {cfg.optim.grad_accum} with fp16 (run.precision "
            f"{cfg.run.precision!r}) would mix loss scales across micro-batches; use bf16, fp32 "
            "(no), or grad_accum 1 with a larger data.batch_size"
        )
    return p


def build_accelerator(cfg: ExperimentConfig) -> Accelerator:
    on_cpu = cfg.run.cpu or not torch.cuda.is_available()
    deepspeed = use_deepspeed_env()
    precision = resolve_precision(cfg, on_cpu)
    if deepspeed and precision == "fp16":
        raise ConfigError(
            "config field `run.precision`: fp16 is not supported with DeepSpeed here (its loss "
            "scaler covers the generator engine only); use bf16 or no"
        )
    if not on_cpu:
        # Training crops have one fixed shape, so cuDNN's algorithm search runs once per
        # conv and the fastest kernel is kept (validation's whole chunks add a few shapes).
        torch.backends.cudnn.benchmark = cfg.run.cudnn_benchmark
    if deepspeed and _env_flag("ACCELERATE_USE_CPU"):
        raise LaunchMismatch(
            "the launch asked for DeepSpeed but ACCELERATE_USE_CPU is set in the environment, "
            "which makes Accelerate train plain DDP instead; unset it (DeepSpeed picks its CPU "
            "accelerator by itself when no GPU is visible)"
        )
    timeout = dist_timeout(cfg)
    pg = InitProcessGroupKwargs(timeout=timeout)
    if deepspeed and on_cpu:
        # Accelerate turns DeepSpeed on only with cpu=False; with no GPU it then needs to be
        # told the backend, else it initialises DeepSpeed's group but reports one process.
        pg = InitProcessGroupKwargs(timeout=timeout, backend="gloo")
    acc = Accelerator(
        # on CPU Accelerate forms a (gloo) process group only when asked to; DeepSpeed is
        # only enabled with cpu=False (its CPU accelerator is picked by DeepSpeed itself)
        cpu=on_cpu and not deepspeed,
        mixed_precision=precision,
        log_with="wandb" if cfg.wandb.enabled and cfg.wandb.mode != "disabled" else None,
        project_dir=str(cfg.run.run_dir),
        # Our LR schedule counts optimizer steps; Accelerate would otherwise step it once
        # per process, which makes the decay depend on the world size.
        step_scheduler_with_optimizer=False,
        # broadcast_buffers off: the only buffer is the quantizer's usage EMA, which each rank
        # keeps from its own data and trainer.distributed.average_usage combines when read
        kwargs_handlers=[
            pg,
            DistributedDataParallelKwargs(find_unused_parameters=False, broadcast_buffers=False),
        ],
    )
    check_launch(acc, deepspeed)
    return acc


def use_fused_adamw(cfg: ExperimentConfig, device_type: str) -> bool:
    """``optim.fused`` with None resolved: fused on CUDA and CPU (the devices whose fused
    AdamW kernel torch ships and we measured: 2.8-3x faster optimizer steps on CPU than
    torch's default per-tensor loop, see BENCHMARKS.md)."""
    if cfg.optim.fused is None:
        return device_type in ("cuda", "cpu")
    return cfg.optim.fused


def _adamw(params, lr: float, cfg: ExperimentConfig, device_type: str) -> torch.optim.AdamW:
    o = cfg.optim
    # not fused: None leaves torch's own choice (foreach on CUDA, per-tensor loop on CPU)
    fused = True if use_fused_adamw(cfg, device_type) else None
    return torch.optim.AdamW(params, lr=lr, betas=o.betas, weight_decay=o.weight_decay, fused=fused)


def _compile(module: nn.Module) -> nn.Module:
    """``torch.compile`` wrapper around ``module``; the original stays reachable as
    ``_orig_mod`` (``Accelerator.unwrap_model`` and :func:`_no_sync` look through it)."""
    return torch.compile(module)


class GanEngine:
    """Plain path (one process or DDP): both models prepared by Accelerate.

    Attributes: ``gen`` and ``disc`` (callable, possibly wrapped), ``codec`` and
    ``discriminator`` (the unwrapped modules), ``sched_g``/``sched_d``.
    """

    kind = "ddp"

    def __init__(self, acc: Accelerator, cfg: ExperimentConfig, gen: nn.Module, disc: nn.Module):
        self.acc, self.cfg = acc, cfg
        o = cfg.optim
        dev = acc.device.type
        opt_g = _adamw(gen.parameters(), o.lr_g, cfg, dev)
        opt_d = _adamw(disc.parameters(), o.lr_d, cfg, dev)
        sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma=o.lr_decay)
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, gamma=o.lr_decay)
        (self.gen, self.disc, self.opt_g, self.opt_d, self.sched_g, self.sched_d) = acc.prepare(
            gen, disc, opt_g, opt_d, sched_g, sched_d
        )
        # With mixed precision, prepare() wraps each model's forward in autocast, in place
        # on the module itself, so the unwrapped generator that validation and export run
        # computed in bf16 too (the DeepSpeed path validated in fp32). The loop enters
        # autocast itself (self.autocast()), so the wrapper is removed: the caller decides.
        for model in (self.gen, self.disc):
            acc.unwrap_model(model, keep_fp32_wrapper=False)
        if cfg.run.compile:
            self.gen, self.disc = _compile(self.gen), _compile(self.disc)
        self._gen_params = [p for p in self.gen.parameters() if p.requires_grad]

    @property
    def codec(self) -> nn.Module:
        # the eager module under any compile wrapper: validation, export and the dead-code
        # reset run it on other shapes and modes, which would only trigger recompiles
        return self.acc.unwrap_model(self.gen, keep_torch_compile=False)

    @property
    def discriminator(self) -> nn.Module:
        return self.acc.unwrap_model(self.disc, keep_torch_compile=False)

    def register_for_checkpointing(self) -> None:
        """Extra objects save_state must cover (none: Accelerate prepared everything)."""

    def after_resume(self) -> None:
        """Fix-ups after ``accelerator.load_state`` (none needed here)."""

    def apply_config_lrs(self) -> list[str]:
        """After ``load_state``: make ``optim.lr_g``/``lr_d`` and ``optim.lr_decay`` the
        schedules' base rates and decay again, keeping how far the schedule has decayed.

        A checkpoint restores the optimizers' ``lr`` and the schedulers' ``base_lrs`` and
        ``gamma``, so without this a resumed run logs (and saves in config.yaml) the new
        rate while training with the old one. Returns one line per value that changed
        (``"generator lr changed on resume: 0.0003 -> 0.0001"``)."""
        o, changes = self.cfg.optim, []
        for name, sched, want in (
            ("generator", self.sched_g, o.lr_g),
            ("discriminator", self.sched_d, o.lr_d),
        ):
            sched = getattr(sched, "scheduler", sched)  # under Accelerate's wrapper
            if sched.gamma != o.lr_decay:
                changes.append(f"{name} lr_decay changed on resume: {sched.gamma} -> {o.lr_decay}")
                sched.gamma = o.lr_decay
            groups = sched.optimizer.param_groups
            for i, group in enumerate(groups):
                old = sched.base_lrs[i]
                if old == want:
                    continue
                changes.append(f"{name} lr changed on resume: {old:g} -> {want:g}")
                group["lr"] = want * group["lr"] / old  # same point of the decay
                group["initial_lr"] = want
                sched.base_lrs[i] = want
                sched._last_lr[i] = group["lr"]  # what get_last_lr() (the log) reports
        return changes

    def autocast(self):
        return self.acc.autocast()

    def gen_accumulating(self, last: bool):
        return contextlib.nullcontext() if last else self.acc.no_sync(self.gen)

    def disc_accumulating(self, last: bool):
        return contextlib.nullcontext() if last else self.acc.no_sync(self.disc)

    def backward_disc(self, loss: torch.Tensor) -> None:
        self.acc.backward(loss)

    def step_disc(self) -> tuple[torch.Tensor, bool]:
        gnorm = self.acc.clip_grad_norm_(self.disc.parameters(), self.cfg.optim.grad_clip_d)
        ok = self._guarded_step(self.opt_d, gnorm)
        self.opt_d.zero_grad(set_to_none=True)
        return gnorm, ok

    def _guarded_step(self, opt, gnorm: torch.Tensor) -> bool:
        """Step ``opt`` only when ``gnorm`` is finite (the guard's one host sync)."""
        ok = bool(torch.isfinite(gnorm))
        if ok or self.acc.scaler is not None:
            # fp16: the scaler found the inf while unscaling; its step skips the update and
            # lowers the scale, which only happens if step() is called
            opt.step()
        return ok

    def generator_pass(self):
        # the discriminator's forward for the G loss must not prepare a DDP all-reduce
        return self.acc.no_sync(self.disc)

    def backward_gen(self, loss: torch.Tensor, last: bool) -> None:
        # gradients into the generator only: no junk gradients in the discriminator
        self.acc.backward(loss, inputs=self._gen_params)

    def step_gen(self) -> tuple[torch.Tensor | float, bool]:
        gnorm = self.acc.clip_grad_norm_(self.gen.parameters(), self.cfg.optim.grad_clip_g)
        ok = self._guarded_step(self.opt_g, gnorm)
        self.opt_g.zero_grad(set_to_none=True)
        self.sched_g.step()
        self.sched_d.step()
        return gnorm, ok

    def lrs(self) -> tuple[float, float]:
        return self.sched_g.get_last_lr()[0], self.sched_d.get_last_lr()[0]

    def replace_dead_codes(self, seed: int) -> torch.Tensor:
        return replace_dead_codes(self.acc, self.codec, seed)


class DeepSpeedGanEngine(GanEngine):
    """Generator in the DeepSpeed engine (ZeRO 1/2), discriminator in torch DDP beside it."""

    kind = "deepspeed"

    def __init__(self, acc: Accelerator, cfg: ExperimentConfig, gen: nn.Module, disc: nn.Module):
        self.acc, self.cfg = acc, cfg
        o = cfg.optim
        plugin = acc.state.deepspeed_plugin
        ds = plugin.deepspeed_config
        stage = ds.get("zero_optimization", {}).get("stage", 0)
        if stage not in (0, 1, 2):
            raise ConfigError(
                f"DeepSpeed config `zero_optimization.stage` is {stage}: only stages 0-2 are "
                "supported (rank-0 "
                "validation cannot run a ZeRO-3 sharded generator; see launch/README.md)"
            )
        for key in ("bf16", "fp16"):
            if str(ds.get(key, {}).get("enabled", False)).lower() == "true":
                raise ConfigError(
                    f"DeepSpeed config `{key}.enabled` must be false (or auto): the trainer "
                    "runs autocast itself so fp32 weights and STFT islands match the DDP path"
                )
            ds[key] = {"enabled": False}
        # Values the experiment config owns; "auto" in the JSON means "take them from it".
        want = {
            "train_micro_batch_size_per_gpu": cfg.data.batch_size,
            "gradient_accumulation_steps": o.grad_accum,
            "gradient_clipping": o.grad_clip_g,
            "train_batch_size": cfg.data.batch_size * o.grad_accum * acc.num_processes,
        }
        for key, value in want.items():
            have = ds.get(key, "auto")
            if have != "auto" and have != value:
                raise ConfigError(
                    f"DeepSpeed config `{key}` is {have} but the experiment config implies "
                    f'{value}; set it to "auto" in the JSON'
                )
            ds[key] = value
        # the loop calls the engine itself; keep Accelerate's own counter in line with it
        acc.gradient_accumulation_steps = o.grad_accum
        self.stage = stage
        self.precision = _autocast_dtype(cfg, acc.device.type)

        opt_g = _adamw(gen.parameters(), o.lr_g, cfg, acc.device.type)
        # The engine wraps opt_g (ZeRO steps it on its fp32 partitions with opt_g's
        # param_groups) and engine.step() clips, steps and zeroes. The schedule stays ours:
        # DeepSpeed only drives its own scheduler types, and Accelerate's wrapper for any
        # other scheduler under DeepSpeed never steps it.
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma=o.lr_decay)
        self.gen, self.opt_g = acc.prepare(gen, opt_g)
        self._base_opt_g = opt_g
        self.engine = self.gen
        if cfg.run.compile:
            # in place (module.compile): the engine keeps its module, checkpoints their keys
            self.engine.compile()

        disc = disc.to(acc.device)
        self._disc_module = disc
        self.opt_d = _adamw(disc.parameters(), o.lr_d, cfg, acc.device.type)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, gamma=o.lr_decay)
        if acc.num_processes > 1:
            ids = [acc.local_process_index] if acc.device.type == "cuda" else None
            self.disc = nn.parallel.DistributedDataParallel(disc, device_ids=ids)
        else:
            self.disc = disc
        if cfg.run.compile:
            self.disc = _compile(self.disc)

    @property
    def codec(self) -> nn.Module:
        return self.engine.module

    @property
    def discriminator(self) -> nn.Module:
        return self._disc_module

    def register_for_checkpointing(self) -> None:
        # save_state writes the engine (generator + its ZeRO optimizer) under
        # pytorch_model/; the schedules and the discriminator side ride along as custom objects.
        self.acc.register_for_checkpointing(
            self.sched_g, self._disc_module, self.opt_d, self.sched_d
        )

    def after_resume(self) -> None:
        # ExponentialLR multiplies the optimizer's current lr; the ZeRO checkpoint restores
        # moments but not param_groups["lr"], so put the scheduled value back.
        for group, lr in zip(
            self._base_opt_g.param_groups, self.sched_g.get_last_lr(), strict=True
        ):
            group["lr"] = lr

    def autocast(self):
        if self.precision is None:
            return contextlib.nullcontext()
        return torch.autocast(self.acc.device.type, dtype=self.precision)

    def gen_accumulating(self, last: bool):
        # DeepSpeed reduces at the boundary it is told about in backward_gen
        return contextlib.nullcontext()

    def disc_accumulating(self, last: bool):
        return contextlib.nullcontext() if last else _no_sync(self.disc)

    def backward_disc(self, loss: torch.Tensor) -> None:
        loss.backward()  # not acc.backward: under DeepSpeed that drives the generator engine

    def step_disc(self) -> tuple[torch.Tensor, bool]:
        gnorm = torch.nn.utils.clip_grad_norm_(
            self._disc_module.parameters(), self.cfg.optim.grad_clip_d
        )
        ok = bool(torch.isfinite(gnorm))  # no scaler here: fp16 is refused under DeepSpeed
        if ok:
            self.opt_d.step()
        self.opt_d.zero_grad(set_to_none=True)
        return gnorm, ok

    @contextlib.contextmanager
    def generator_pass(self) -> Iterator[None]:
        params = [p for p in self._disc_module.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            with _no_sync(self.disc):
                yield
        finally:
            for p in params:
                p.requires_grad_(True)

    def backward_gen(self, loss: torch.Tensor, last: bool) -> None:
        self.engine.set_gradient_accumulation_boundary(last)
        # the loop already divided by grad_accum (as on the DDP path)
        self.engine.backward(loss, scale_wrt_gas=False)

    def step_gen(self) -> tuple[torch.Tensor | float, bool]:
        if self.stage == 0:
            return self._step_gen_stage0()
        self.engine.step()  # clip (gradient_clipping), step, zero grads
        self.sched_g.step()
        self.sched_d.step()
        gnorm = self.engine.get_global_grad_norm()
        gnorm = float("nan") if gnorm is None else float(gnorm)
        ok = math.isfinite(gnorm)
        if not ok and self.engine.was_step_applied():
            # DeepSpeed applied a step it should have skipped: the weights are poisoned
            raise RuntimeError(
                "DeepSpeed applied an optimizer step with a non-finite gradient norm; this "
                "DeepSpeed version does not skip such steps. Stopping without saving; resume "
                "from the last checkpoint."
            )
        return gnorm, ok

    def _step_gen_stage0(self) -> tuple[float, bool]:
        """Stage 0 has no ZeRO optimizer: it neither checks the norm nor reports one
        (``get_global_grad_norm`` is None), so the norm of the all-reduced gradients in
        ``.grad`` is taken here, before the engine clips and steps."""
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        gnorm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        ok = math.isfinite(gnorm)
        if ok:
            self.engine.step()  # clip (gradient_clipping), step, zero grads
        else:
            self.engine.zero_grad()
        self.sched_g.step()
        self.sched_d.step()
        return gnorm, ok

    def lrs(self) -> tuple[float, float]:
        return self.engine.get_lr()[0], self.sched_d.get_last_lr()[0]

    def replace_dead_codes(self, seed: int) -> torch.Tensor:
        """As on the DDP path, then push the new rows into ZeRO's fp32 master copy, which
        would otherwise overwrite them at the next optimizer step."""
        from deepspeed.utils import safe_set_full_fp32_param

        replaced = replace_dead_codes(self.acc, self.codec, seed)
        for q in self.codec.quantizer.quantizers:
            w = q.codebook.weight
            safe_set_full_fp32_param(w, w.detach().clone().float())
        return replaced


def _autocast_dtype(cfg: ExperimentConfig, device_type: str) -> torch.dtype | None:
    p = resolve_precision(cfg, device_type != "cuda")
    return torch.bfloat16 if p == "bf16" else None


def _no_sync(module: nn.Module):
    module = getattr(module, "_orig_mod", module)  # a torch.compile wrapper: its DDP inside
    if isinstance(module, nn.parallel.DistributedDataParallel):
        return module.no_sync()
    return contextlib.nullcontext()


def build_engine(
    acc: Accelerator, cfg: ExperimentConfig, gen: nn.Module, disc: nn.Module
) -> GanEngine:
    """The engine for the distributed type ``acc`` runs under."""
    if acc.distributed_type == DistributedType.DEEPSPEED:
        return DeepSpeedGanEngine(acc, cfg, gen, disc)
    return GanEngine(acc, cfg, gen, disc)
