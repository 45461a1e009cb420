"""Times an EnCodec training step (PyPI ``encodec``) for the step benchmark.

Runs in the reference venv (``scripts/ref-venvs.sh``), never in ours, and imports nothing
from TeluCodec. The ``encodec`` package ships the model and the discriminator but no
training code, so this file says exactly which part comes from where:

From the package (``encodec`` 0.1.1):
  * the generator: ``EncodecModel._get_model`` (SEANet encoder/decoder, 32 filters, ratios
    8/5/4/2, 2-layer LSTM, weight norm, causal: the 24 kHz model's architecture) built at
    16 kHz with target bandwidths 1.5/3/6 kbps, i.e. 12 codebooks of 1024 at 50 Hz, the
    same code layout as DAC's 16 kHz recipe. Random init; no weights are ever downloaded.
  * its residual VQ with k-means init, EMA codebooks, dead-code expiry and the commitment
    loss (``QuantizedResult.penalty``).
  * ``encodec.msstftd.MultiScaleSTFTDiscriminator`` (32 filters, 5 scales, the paper's
    windows 2048..128 with hop = window / 4).

Written here from the EnCodec paper (Defossez et al. 2022, sections 3.4 and 4), because the
PyPI release has no training code and no ``encodec.balancer`` (it first appears in the
unreleased 0.1.2a1 on GitHub):
  * l_t: L1 between waveforms.
  * l_f: over windows 2^5..2^11 (hop = window / 4), L1 + L2 (mean squared) between 64-bin
    mel spectrograms of a normalized STFT, alpha_i = 1, averaged over scales.
  * l_g: hinge, mean over the K discriminators of mean(relu(1 - D_k(x_hat))).
  * l_feat: relative feature matching, mean over k, l of
    mean|D_k^l(x) - D_k^l(x_hat)| / mean|D_k^l(x)|.
  * discriminator: mean over k of mean(relu(1 - D_k(x))) + mean(relu(1 + D_k(x_hat))).
  * the loss balancer: g_i = d l_i / d x_hat is rescaled to R * lambda_i / sum(lambda) *
    g_i / <||g_i||_2>_beta (R = 1, beta = 0.999, bias-corrected EMA) and the sum is
    back-propagated from x_hat, with lambda t 0.1, f 1, g 3, feat 3; the commitment loss
    (weight 1) bypasses the balancer because it does not depend on x_hat.
  * Adam, lr 3e-4, betas (0.5, 0.9) for both networks; no gradient clipping.

Choices that make the timing comparable with DAC (also in "notes"): the discriminator is
updated every step (the paper updates it with probability 2/3 at 24 kHz) and every step uses
all 12 codebooks (the paper samples a bandwidth per batch; DAC's quantizer dropout also runs
all codebooks), fp32. ``--tiny`` shrinks the generator and discriminator, not the losses.

Usage (repository root, reference venv):
    .venv-ref/bin/python benchmarks/refs/encodec_step.py --batch 2 --segment-samples 8000 \
        --steps 5 --warmup 2 --device cpu [--tiny] [--threads N]
"""

from __future__ import annotations

import random
import sys
from importlib import metadata

import torch
import torch.nn.functional as F
from _harness import common_record, emit, make_batch, parse_args, time_steps

PROG = "encodec_step"
SAMPLE_RATE = 16000  # Hz
TARGET_BANDWIDTHS = [1.5, 3.0, 6.0]  # kbps; 6 kbps at 50 Hz x 10 bits = 12 codebooks
MSSTFTD = dict(  # the paper's 5 scales; the package default lists only 3
    filters=32,
    n_ffts=[2048, 1024, 512, 256, 128],
    hop_lengths=[512, 256, 128, 64, 32],
    win_lengths=[2048, 1024, 512, 256, 128],
)
MSSTFTD_TINY = dict(filters=4, n_ffts=[512, 128], hop_lengths=[128, 32], win_lengths=[512, 128])
TINY_SEANET = dict(n_filters=4, dimension=32, ratios=[8, 5, 4, 2], lstm=1)
TINY_RVQ = dict(dimension=32, n_q=4, bins=64)
MEL_SCALES = range(5, 12)  # windows 2^5 .. 2^11 samples
MEL_BINS = 64
LAMBDAS = {"l_t": 0.1, "l_f": 1.0, "l_g": 3.0, "l_feat": 3.0}
COMMIT_WEIGHT = 1.0
ADAM = dict(lr=3e-4, betas=(0.5, 0.9))
BALANCER_BETA, BALANCER_R = 0.999, 1.0
MIN_SEGMENT = 2048  # samples: the longest STFT window (mel loss and discriminator)


def build_generator(tiny: bool):
    """The package's ``EncodecModel``; ``--tiny`` assembles the same classes smaller."""
    from encodec import modules as m
    from encodec import quantization as qt
    from encodec.model import EncodecModel

    if not tiny:
        return EncodecModel._get_model(TARGET_BANDWIDTHS, sample_rate=SAMPLE_RATE, channels=1)
    enc = m.SEANetEncoder(channels=1, norm="weight_norm", causal=True, **TINY_SEANET)
    dec = m.SEANetDecoder(channels=1, norm="weight_norm", causal=True, **TINY_SEANET)
    rvq = qt.ResidualVectorQuantizer(**TINY_RVQ)
    return EncodecModel(enc, dec, rvq, TARGET_BANDWIDTHS, SAMPLE_RATE, channels=1)


class Balancer:
    """The paper's loss balancer (section 3.4), written from its description.

    ``backward(losses, x_hat)`` back-propagates sum_i R * w_i * g_i / <||g_i||>_beta from
    ``x_hat`` where g_i = d loss_i / d x_hat, w_i = lambda_i / sum(lambda) and <.>_beta is an
    exponential moving average over steps (bias-corrected, so the first step uses the
    current norm). Each loss's share of the gradient is then its weight, whatever its scale.
    """

    def __init__(
        self, weights: dict[str, float], beta: float = BALANCER_BETA, total_norm: float = BALANCER_R
    ):
        self.weights, self.beta, self.total_norm = weights, beta, total_norm
        # Tensors, not floats: reading a norm back with .item() would stall a GPU every step.
        self.ema_sum: dict[str, torch.Tensor] = {}
        self.ema_count = 0.0

    def backward(
        self,
        losses: dict[str, torch.Tensor],
        x_hat: torch.Tensor,
        extra: torch.Tensor | None = None,
    ) -> None:
        """``extra`` (a scalar that does not depend on ``x_hat``) is back-propagated as is,
        in the same pass, so the shared graph is traversed once."""
        grads = {}
        for name, loss in losses.items():
            (grads[name],) = torch.autograd.grad(loss, [x_hat], retain_graph=True)
        self.ema_count = self.beta * self.ema_count + 1.0
        wsum = sum(self.weights[k] for k in losses)
        total = torch.zeros_like(x_hat)
        for name, g in grads.items():
            self.ema_sum[name] = self.beta * self.ema_sum.get(name, 0.0) + g.norm(p=2)
            avg = self.ema_sum[name] / self.ema_count
            total += g * (self.total_norm * self.weights[name] / wsum / (avg + 1e-12))
        if extra is None:
            x_hat.backward(total)
        else:
            torch.autograd.backward([x_hat, extra], [total, torch.ones_like(extra)])


class MelLoss(torch.nn.Module):
    """l_f: 1/|e| sum over e = 5..11 of L1 + L2 between 64-bin mel spectrograms of a
    normalized STFT with window 2^e and hop 2^e / 4. ``x, y``: ``[B, 1, T]``."""

    def __init__(self):
        super().__init__()
        import torchaudio

        self.mels = torch.nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=SAMPLE_RATE,
                n_fft=2**e,
                win_length=2**e,
                hop_length=2**e // 4,
                n_mels=MEL_BINS,
                normalized=True,
                power=1.0,
                center=True,
            )
            for e in MEL_SCALES
        )

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loss = x_hat.new_zeros(())
        for mel in self.mels:
            a, b = mel(x_hat), mel(x)
            loss = loss + F.l1_loss(a, b) + F.mse_loss(a, b)
        return loss / len(self.mels)


def disc_loss(logits_real: list, logits_fake: list) -> torch.Tensor:
    """Hinge loss of the discriminator, averaged over the K scales."""
    terms = [
        F.relu(1 - r).mean() + F.relu(1 + f).mean()
        for r, f in zip(logits_real, logits_fake, strict=True)
    ]
    return sum(terms) / len(terms)


def adv_losses(logits_fake: list, fmap_fake: list, fmap_real: list) -> tuple:
    """(l_g, l_feat): generator hinge loss and relative feature matching."""
    l_g = sum(F.relu(1 - f).mean() for f in logits_fake) / len(logits_fake)
    feats = [
        (fr - ff).abs().mean() / (fr.abs().mean() + 1e-12)
        for fk, rk in zip(fmap_fake, fmap_real, strict=True)
        for ff, fr in zip(fk, rk, strict=True)
    ]
    return l_g, sum(feats) / len(feats)


def build(tiny: bool, device: torch.device) -> dict:
    from encodec.msstftd import MultiScaleSTFTDiscriminator

    generator = build_generator(tiny).to(device)
    discriminator = MultiScaleSTFTDiscriminator(**(MSSTFTD_TINY if tiny else MSSTFTD)).to(device)
    return {
        "generator": generator,
        "discriminator": discriminator,
        "opt_g": torch.optim.Adam(generator.parameters(), **ADAM),
        "opt_d": torch.optim.Adam(discriminator.parameters(), **ADAM),
        "mel_loss": MelLoss().to(device),
        "balancer": Balancer(LAMBDAS),
    }


def train_step(state: dict, x: torch.Tensor) -> dict[str, float]:
    """One EnCodec step on ``x`` ``[B, 1, T]``: forward, D step, balanced G step."""
    model, disc = state["generator"], state["discriminator"]
    model.train()
    disc.train()
    # The package's forward() goes through integer codes (inference); training needs the
    # straight-through quantized latents and the commitment penalty, so call the parts.
    emb = model.encoder(x)
    q = model.quantizer(emb, model.frame_rate, None)  # None: all codebooks, every step
    x_hat = model.decoder(q.quantized)[..., : x.shape[-1]]

    logits_fake, _ = disc(x_hat.detach())
    logits_real, _ = disc(x)
    d_loss = disc_loss(logits_real, logits_fake)
    state["opt_d"].zero_grad()
    d_loss.backward()
    state["opt_d"].step()

    logits_fake, fmap_fake = disc(x_hat)
    with torch.no_grad():
        _, fmap_real = disc(x)
    l_g, l_feat = adv_losses(logits_fake, fmap_fake, fmap_real)
    losses = {
        "l_t": F.l1_loss(x_hat, x),
        "l_f": state["mel_loss"](x_hat, x),
        "l_g": l_g,
        "l_feat": l_feat,
    }
    commit = COMMIT_WEIGHT * q.penalty
    state["opt_g"].zero_grad()
    state["balancer"].backward(losses, x_hat, extra=commit)
    state["opt_g"].step()
    logs = {k: float(v) for k, v in losses.items()}
    logs.update(d_loss=float(d_loss), commit=float(q.penalty))
    return logs


def run(args) -> dict:
    """Builds EnCodec, runs ``warmup + steps`` training steps on one fixed batch, times the
    last ``steps`` and returns the JSON record (times in seconds, memory in GiB)."""
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as DAC's script does, so both sides match
        torch.cuda.reset_peak_memory_stats(dev)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    state = build(args.tiny, dev)
    audio = make_batch(args.batch, args.segment_samples, args.seed, dev, SAMPLE_RATE)
    # Empty mel filters at the 32-sample window (17 FFT bins for 64 mels) are the paper's
    # setting, not a bug; emit() silences that UserWarning and weight_norm's FutureWarning.
    times, mel = time_steps(
        PROG, lambda: train_step(state, audio), args.warmup, args.steps, dev, "l_f"
    )
    rvq, frame_rate = state["generator"].quantizer, state["generator"].frame_rate
    kbps = rvq.n_q * rvq.get_bandwidth_per_quantizer(frame_rate)
    return {
        "impl": "encodec",
        "version": metadata.version("encodec"),
        **common_record(dev, args, SAMPLE_RATE, state["generator"], state["discriminator"], times),
        "recon_loss": "encodec l_f (multi-scale mel L1+L2), every step incl. warmup",
        "recon_loss_per_step": mel,
        "notes": (
            "From the encodec PyPI package: EncodecModel (SEANet enc/dec + RVQ with k-means "
            f"init, EMA codebooks, commitment penalty; 16 kHz, {rvq.n_q} codebooks of "
            f"{rvq.bins} = {kbps:g} kbps) and MultiScaleSTFTDiscriminator. Written from the "
            "EnCodec paper (no training code or balancer in the PyPI release): l_t, l_f (mel "
            "L1+L2, windows 2^5..2^11), hinge l_g and D loss, relative l_feat, the gradient "
            "balancer (t 0.1, f 1, g 3, feat 3; R 1, beta 0.999), commitment weight 1 outside "
            "it, Adam 3e-4 (0.5, 0.9). D updated every step and all codebooks every step "
            "(paper: D with p=2/3, random bandwidth), fp32, fixed seeded batch."
            + (
                " --tiny: SEANet 4 filters, dim 32, 1 LSTM layer, 4x64 codebooks, MS-STFT-D "
                "4 filters at windows 512/128."
                if args.tiny
                else ""
            )
        ),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(PROG, __doc__.split("\n\n")[0], argv, MIN_SEGMENT)
    return emit(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
