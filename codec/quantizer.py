"""Residual vector quantisation with factorised, L2-normalised codes (DAC / Improved VQGAN).

Each stage projects its residual ``[B, D, F]`` to ``codebook_dim`` channels (``in_proj``),
picks the codebook entry with the highest cosine similarity, and projects back
(``out_proj``). Gradients reach the encoder through the straight-through estimator.

Codebook health (not in DAC): every stage keeps ``usage_ema`` of its code-assignment shares
relative to uniform, reports usage and perplexity, and can re-initialise its dead entries
from the projected residuals of the most recent training batch. Syncing the results across
ranks is the trainer's job; :meth:`ResidualVectorQuantizer.sync_buffers` lists what to sync.

The nearest-neighbour search and the VQ losses run in fp32 with autocast disabled: they are
tiny (``codebook_dim`` = 8) and bf16 cosine similarities would turn near-ties into noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.layers import WNConv1d


class VectorQuantizer(nn.Module):
    """One factorised VQ stage: ``in_proj`` -> cosine nearest code -> ``out_proj``."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.in_proj = WNConv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest(self, z_e: Tensor) -> Tensor:
        """Indices ``[B, F]`` of the entries closest in cosine to ``z_e`` ``[B, d, F]`` (fp32)."""
        enc = F.normalize(z_e.transpose(1, 2).float(), dim=-1)  # [B, F, d]
        cb = F.normalize(self.codebook.weight.float(), dim=-1)  # [K, d]
        # On unit vectors argmin of the Euclidean distance == argmax of the dot product.
        return (enc @ cb.t()).argmax(dim=-1)

    def lookup(self, indices: Tensor) -> Tensor:
        """Raw (un-normalised, as in DAC) codebook vectors ``[B, d, F]`` for ``[B, F]``."""
        return F.embedding(indices, self.codebook.weight).transpose(1, 2)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Quantise ``z`` ``[B, D, F]``.

        Returns ``z_q`` ``[B, D, F]`` (after ``out_proj``, straight-through), commitment and
        codebook losses ``[B]`` (fp32 MSE per item), indices ``[B, F]``, and the projected
        input ``z_e`` ``[B, d, F]`` (fp32).
        """
        z_e = self.in_proj(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z_e = z_e.float()
            indices = self.nearest(z_e)
            z_q = self.lookup(indices).float()
            commitment = F.mse_loss(z_e, z_q.detach(), reduction="none").mean(dim=(1, 2))
            codebook = F.mse_loss(z_q, z_e.detach(), reduction="none").mean(dim=(1, 2))
            # Straight-through: forward value is z_q, gradient flows to z_e unchanged.
            z_q = z_e + (z_q - z_e).detach()
        return self.out_proj(z_q), commitment, codebook, indices, z_e


@dataclass
class QuantizerOutput:
    """See :meth:`ResidualVectorQuantizer.forward`."""

    z: Tensor
    codes: Tensor
    commitment_loss: Tensor
    codebook_loss: Tensor
    n_quantizers_used: Tensor


class ResidualVectorQuantizer(nn.Module):
    """``n_codebooks`` VQ stages, each quantising what the previous ones left.

    Args:
        input_dim: latent channels ``D``.
        n_codebooks, codebook_size, codebook_dim: ``N`` stages of ``K`` entries in ``d`` dims.
        quantizer_dropout: in training (and only when ``n_quantizers`` is not given), each
            item independently, with this probability, reconstructs from a random number of
            stages drawn uniformly from ``1..N``; the others use all ``N``. (DAC drops a fixed
            share ``int(B * p)`` of the batch instead, which is zero for a per-rank batch of 1.)
        dead_code_threshold: usage relative to uniform below which an entry counts as dead.
        usage_decay: EMA decay of ``usage_ema`` per training forward.

    Buffers: ``usage_ema`` ``[N, K]``: EMA of ``K * (share of assignments)``, so a uniformly
    used codebook reads 1.0 everywhere. Initialised to 1.0 so new entries get a grace period.
    """

    def __init__(
        self,
        *,
        input_dim: int,
        n_codebooks: int,
        codebook_size: int,
        codebook_dim: int,
        quantizer_dropout: float = 0.0,
        dead_code_threshold: float = 0.03,
        usage_decay: float = 0.99,
    ):
        super().__init__()
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.quantizer_dropout = quantizer_dropout
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.quantizers = nn.ModuleList(
            VectorQuantizer(input_dim, codebook_size, codebook_dim) for _ in range(n_codebooks)
        )
        self.register_buffer("usage_ema", torch.ones(n_codebooks, codebook_size))
        # Projected residuals [n_frames, d] of the last training batch, one per stage; plain
        # attribute (not a buffer): never saved, never synced, only read by replace_dead_codes.
        self.last_residuals: list[Tensor] | None = None

    def _check_n(self, n_quantizers: int | None) -> int:
        if n_quantizers is None:
            return self.n_codebooks
        if not 1 <= int(n_quantizers) <= self.n_codebooks:
            raise ValueError(f"n_quantizers: must be in 1..{self.n_codebooks}, got {n_quantizers}")
        return int(n_quantizers)

    def _sample_n_per_item(self, batch: int, device: torch.device) -> Tensor:
        n = torch.full((batch,), self.n_codebooks, dtype=torch.long)
        if self.quantizer_dropout > 0:
            drop = torch.rand(batch) < self.quantizer_dropout
            random_n = torch.randint(1, self.n_codebooks + 1, (batch,))
            n = torch.where(drop, random_n, n)
        # Sampled on CPU with the global generator: identical across devices for a given seed,
        # and restored exactly when the trainer restores the CPU RNG state.
        if device.type == "cuda":
            # pinned + non_blocking: a blocking (or pageable) copy waits for every kernel
            # queued so far, i.e. a host sync in the middle of each training forward
            return n.pin_memory().to(device, non_blocking=True)
        return n.to(device)

    def forward(self, z: Tensor, n_quantizers: int | None = None) -> QuantizerOutput:
        """Quantise latents ``z`` ``[B, D, F]``.

        Training mode with ``n_quantizers=None`` runs all stages and masks each item's
        reconstruction (and VQ losses) to its sampled number of stages; otherwise only the
        first ``n_quantizers`` (default all) stages run. Losses are summed over stages and
        averaged over items (DAC); ``codes`` is ``[B, stages run, F]``.
        """
        batch = z.shape[0]
        dropout_mode = self.training and n_quantizers is None
        if dropout_mode:
            n_per_item = self._sample_n_per_item(batch, z.device)
            stages = self.n_codebooks
        else:
            stages = self._check_n(n_quantizers)
            n_per_item = torch.full((batch,), stages, dtype=torch.long, device=z.device)

        z_q: Tensor | None = None
        residual = z
        commitment = z.new_zeros((), dtype=torch.float32)
        codebook = z.new_zeros((), dtype=torch.float32)
        codes, residuals = [], []
        for i in range(stages):
            z_q_i, commit_i, cb_i, idx_i, z_e_i = self.quantizers[i](residual)
            mask = (n_per_item > i).to(z_q_i.dtype)
            contrib = z_q_i * mask[:, None, None] if dropout_mode else z_q_i
            z_q = contrib if z_q is None else z_q + contrib
            # As in DAC the residual is not masked: later stages still see (and learn) the
            # full chain for items that will not use them in this step.
            residual = residual - z_q_i
            maskf = mask.float()
            commitment = commitment + (commit_i * maskf).mean()
            codebook = codebook + (cb_i * maskf).mean()
            codes.append(idx_i)
            if self.training:
                residuals.append(z_e_i.detach().transpose(1, 2).reshape(-1, self.codebook_dim))

        codes_t = torch.stack(codes, dim=1)
        if self.training:
            self.last_residuals = residuals
            self._update_usage(codes_t)
        assert z_q is not None
        return QuantizerOutput(
            z=z_q,
            codes=codes_t,
            commitment_loss=commitment,
            codebook_loss=codebook,
            n_quantizers_used=n_per_item,
        )

    @torch.no_grad()
    def _update_usage(self, codes: Tensor) -> None:
        """EMA of ``K * share`` per entry for each stage in ``codes`` ``[B, n, F]``."""
        n = codes.shape[1]
        flat = codes.transpose(0, 1).reshape(n, -1)  # [n, B*F]
        offsets = torch.arange(n, device=codes.device)[:, None] * self.codebook_size
        # scatter_add into a fixed-size buffer rather than bincount: CUDA's bincount reads the
        # input's max back to the host to size its output (a sync every training forward),
        # and that data-dependent shape is also a torch.compile graph break.
        idx = (flat + offsets).reshape(-1)
        counts = torch.zeros(n * self.codebook_size, dtype=torch.long, device=codes.device)
        counts = counts.scatter_add_(0, idx, torch.ones_like(idx)).view(n, self.codebook_size)
        share = counts.float() * (self.codebook_size / flat.shape[1])
        self.usage_ema[:n].mul_(self.usage_decay).add_(share, alpha=1.0 - self.usage_decay)

    @torch.no_grad()
    def quantize(self, z: Tensor, n_quantizers: int | None = None) -> Tensor:
        """Codes ``[B, n_q, F]`` for latents ``z``; no dropout, no state updates."""
        stages = self._check_n(n_quantizers)
        residual, codes = z, []
        for i in range(stages):
            q = self.quantizers[i]
            z_e = q.in_proj(residual)
            idx = q.nearest(z_e)
            residual = residual - q.out_proj(q.lookup(idx).to(z_e.dtype))
            codes.append(idx)
        return torch.stack(codes, dim=1)

    def from_codes(self, codes: Tensor) -> Tensor:
        """Quantised latent ``[B, D, F]`` from codes ``[B, n_q, F]`` (``n_q <= N``)."""
        if codes.dim() != 3:
            raise ValueError(f"codes: expected shape [B, n_q, F], got {tuple(codes.shape)}")
        self._check_n(codes.shape[1])
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"codes: entries must be in 0..{self.codebook_size - 1}")
        z_q = None
        for i in range(codes.shape[1]):
            q = self.quantizers[i]
            z_q_i = q.out_proj(q.lookup(codes[:, i]))
            z_q = z_q_i if z_q is None else z_q + z_q_i
        assert z_q is not None
        return z_q

    # ---- codebook health -------------------------------------------------------------

    def dead_mask(self) -> Tensor:
        """``[N, K]`` bool: entries whose usage EMA is below ``dead_code_threshold``."""
        return self.usage_ema < self.dead_code_threshold

    @torch.no_grad()
    def codebook_stats(self) -> dict[str, Tensor]:
        """Per-stage health from ``usage_ema`` (each value a ``[N]`` fp32 tensor).

        usage: share of entries that are alive (usage EMA >= threshold), in [0, 1].
        perplexity: ``exp(entropy)`` of the EMA assignment distribution, in [1, K]; K means
            uniform use, 1 means one entry takes everything.
        dead: number of dead entries.
        """
        dead = self.dead_mask()
        p = self.usage_ema / self.usage_ema.sum(dim=1, keepdim=True).clamp_min(1e-12)
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)
        return {
            "usage": 1.0 - dead.float().mean(dim=1),
            "perplexity": torch.exp(entropy),
            "dead": dead.float().sum(dim=1),
        }

    @torch.no_grad()
    def replace_dead_codes(
        self,
        residuals: list[Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Re-initialise dead entries from random recent projected residuals of their stage.

        Args:
            residuals: per stage, ``[n, codebook_dim]`` vectors in that stage's projected
                space; default: those cached by the last training forward.
            generator: CPU ``torch.Generator`` for the random picks (rank 0 replaces, the
                trainer then broadcasts :meth:`sync_buffers`).

        Replaced entries get their usage EMA reset to 1.0 (uniform), a grace period before
        they can be judged dead again. Returns ``[N]`` long: entries replaced per stage.
        Note: optimiser moments of replaced rows are left as they are (model code does not
        see the optimiser); with Adam they re-adapt within a few steps.
        """
        if residuals is None:
            residuals = self.last_residuals
        if residuals is None:
            raise RuntimeError(
                "replace_dead_codes: no cached residuals; run a forward pass in training mode "
                "first or pass residuals explicitly"
            )
        dead = self.dead_mask()
        replaced = torch.zeros(self.n_codebooks, dtype=torch.long)
        for i, res in enumerate(residuals[: self.n_codebooks]):
            idx = dead[i].nonzero(as_tuple=True)[0]
            if idx.numel() == 0 or res.numel() == 0:
                continue
            res = res.reshape(-1, self.codebook_dim)
            n_dead, n_avail = idx.numel(), res.shape[0]
            if n_avail >= n_dead:
                pick = torch.randperm(n_avail, generator=generator)[:n_dead]
            else:
                pick = torch.randint(0, n_avail, (n_dead,), generator=generator)
            new = res[pick.to(res.device)].float()
            if n_avail < n_dead:
                # Duplicates would tie in the argmax and stay dead; jitter them apart.
                noise = torch.randn(new.shape, generator=generator).to(new.device)
                new = new + 1e-3 * new.norm(dim=1, keepdim=True) * noise
            weight = self.quantizers[i].codebook.weight
            weight[idx.to(weight.device)] = new.to(weight.dtype)
            self.usage_ema[i, idx.to(self.usage_ema.device)] = 1.0
            replaced[i] = n_dead
        return replaced

    def sync_buffers(self) -> list[Tensor]:
        """Tensors that must be identical on every rank after a dead-code replacement.

        The codebook weights of every stage and ``usage_ema``; the trainer broadcasts them
        from rank 0 in place (``tensor.data``).
        """
        return [q.codebook.weight for q in self.quantizers] + [self.usage_ema]
