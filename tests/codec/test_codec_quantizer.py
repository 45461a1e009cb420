"""Residual VQ: straight-through gradients, code ranges, dropout, codebook health."""

from __future__ import annotations

import math

import pytest
import torch

from codec.build import build_codec
from codec.quantizer import ResidualVectorQuantizer


def make_rvq(**kw) -> ResidualVectorQuantizer:
    args = dict(input_dim=16, n_codebooks=4, codebook_size=32, codebook_dim=4)
    args.update(kw)
    return ResidualVectorQuantizer(**args)


def test_straight_through_gradient_reaches_the_encoder(debug_codec_cfg, make_speech):
    codec = build_codec(debug_codec_cfg).train()
    out = codec(make_speech(0.25, batch=2))
    out.audio.pow(2).mean().backward()  # a reconstruction-only loss: no VQ loss terms
    first = codec.encoder.block[0].parametrizations.weight.original1.grad
    assert first is not None and first.abs().sum() > 0
    # in_proj of every stage gets gradient only through the straight-through path.
    for q in codec.quantizer.quantizers:
        assert q.in_proj.parametrizations.weight.original1.grad.abs().sum() > 0


def test_vq_losses_train_codebook_and_encoder_separately():
    rvq = make_rvq(n_codebooks=1).train()
    z = torch.randn(2, 16, 10, requires_grad=True)
    out = rvq(z, n_quantizers=1)
    out.codebook_loss.backward(retain_graph=True)
    assert rvq.quantizers[0].codebook.weight.grad.abs().sum() > 0
    assert z.grad is None  # codebook loss does not move the encoder
    rvq.zero_grad()
    out.commitment_loss.backward()
    assert z.grad.abs().sum() > 0
    assert (
        rvq.quantizers[0].codebook.weight.grad is None
        or not rvq.quantizers[0].codebook.weight.grad.any()
    )


def test_codes_in_range_and_n_quantizers_respected():
    rvq = make_rvq().eval()
    z = torch.randn(3, 16, 11)
    for n in (1, 2, 4):
        out = rvq(z, n_quantizers=n)
        assert out.codes.shape == (3, n, 11)
        assert out.codes.min() >= 0 and out.codes.max() < 32
        assert out.n_quantizers_used.tolist() == [n] * 3
        # Codes alone reproduce the quantised latent (what decode relies on).
        torch.testing.assert_close(rvq.from_codes(out.codes), out.z)
        assert torch.equal(rvq.quantize(z, n), out.codes)
    with pytest.raises(ValueError, match="n_quantizers"):
        rvq(z, n_quantizers=5)


def test_quantizer_dropout_varies_per_item_in_training_only():
    rvq = make_rvq(quantizer_dropout=0.5).train()
    z = torch.randn(64, 16, 5)
    out = rvq(z)
    n = out.n_quantizers_used
    assert out.codes.shape == (64, 4, 5)  # all stages run in training
    assert (n == 4).any() and (n < 4).any() and len(set(n.tolist())) >= 3
    # Each item's reconstruction uses exactly its first n_i stages: equal to eval with n_i.
    rvq.eval()
    for i in range(0, 64, 7):
        ref = rvq(z[i : i + 1], n_quantizers=int(n[i])).z
        torch.testing.assert_close(out.z[i : i + 1], ref)
    assert rvq(z).n_quantizers_used.unique().tolist() == [4]
    # An explicit n_quantizers disables dropout even in training.
    rvq.train()
    assert rvq(z, n_quantizers=2).n_quantizers_used.unique().tolist() == [2]


def test_usage_update_and_stats_on_crafted_assignments():
    rvq = make_rvq(n_codebooks=2, codebook_size=4, usage_decay=0.5, dead_code_threshold=0.2)
    # Stage 0: codes {0,0,1,1} (2 of 4 entries, equally); stage 1: always code 3.
    codes = torch.tensor([[[0, 0], [3, 3]], [[1, 1], [3, 3]]])  # [B=2, n=2, F=2]
    rvq._update_usage(codes)
    # share relative to uniform = count * K / N = [2, 2, 0, 0] and [0, 0, 0, 4];
    # EMA from 1.0 with decay 0.5: 0.5 * 1 + 0.5 * share.
    expect = torch.tensor([[1.5, 1.5, 0.5, 0.5], [0.5, 0.5, 0.5, 2.5]])
    torch.testing.assert_close(rvq.usage_ema, expect)

    rvq.usage_ema.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 0.0, 0.0]]))
    stats = rvq.codebook_stats()
    torch.testing.assert_close(stats["perplexity"], torch.tensor([4.0, 2.0]))
    torch.testing.assert_close(stats["usage"], torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(stats["dead"], torch.tensor([0.0, 2.0]))
    rvq.usage_ema.copy_(torch.tensor([[4.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))
    stats = rvq.codebook_stats()
    assert stats["perplexity"][0].item() == pytest.approx(1.0)


def test_dead_code_replacement_revives_a_collapsed_codebook():
    torch.manual_seed(1)
    k = 32
    rvq = make_rvq(n_codebooks=1, codebook_size=k, usage_decay=0.5, dead_code_threshold=0.03)
    rvq.train()
    base = torch.randn(16)
    z = base[None, :, None] + 0.5 * torch.randn(8, 16, 20)  # a cloud of latents
    with torch.no_grad():
        m = rvq.quantizers[0].in_proj(z).mean(dim=(0, 2))
        # Collapse by construction: entry 0 points at the data, all others away from it.
        w = rvq.quantizers[0].codebook.weight
        w[:] = -m + 0.01 * torch.randn(k, 4)
        w[0] = m
        for _ in range(12):
            out = rvq(z)
    assert out.codes.unique().tolist() == [0]
    before = rvq.codebook_stats()
    assert before["dead"].item() == k - 1
    assert before["perplexity"].item() < 1.1

    cached = rvq.last_residuals[0].clone()
    replaced = rvq.replace_dead_codes(generator=torch.Generator().manual_seed(0))
    assert replaced.tolist() == [k - 1]
    # Every revived entry is one of the cached projected residuals of that stage.
    revived = rvq.quantizers[0].codebook.weight[1:]
    dist = torch.cdist(revived, cached, compute_mode="donot_use_mm_for_euclid_dist")
    dist = dist.min(dim=1).values
    assert dist.max() < 1e-6
    assert rvq.codebook_stats()["dead"].item() == 0  # grace period: reset to uniform

    with torch.no_grad():
        for _ in range(12):  # long enough for unused entries to decay below threshold again
            out = rvq(z)
    after = rvq.codebook_stats()
    assert out.codes.unique().numel() > k // 2
    assert after["dead"].item() < k // 2
    assert after["perplexity"].item() > 8 * before["perplexity"].item()


def test_replace_without_cache_is_a_clear_error():
    rvq = make_rvq()
    with pytest.raises(RuntimeError, match="no cached residuals"):
        rvq.replace_dead_codes()


def test_sync_buffers_lists_codebooks_and_usage():
    rvq = make_rvq()
    bufs = rvq.sync_buffers()
    assert len(bufs) == 4 + 1
    assert bufs[-1] is rvq.usage_ema
    assert all(b.shape == (32, 4) for b in bufs[:-1])


def test_vq_runs_in_fp32_under_bf16_autocast():
    rvq = make_rvq().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rvq(torch.randn(2, 16, 7))
    assert out.codebook_loss.dtype == torch.float32
    assert out.commitment_loss.dtype == torch.float32
    assert math.isfinite(out.codebook_loss.item())
    assert rvq.last_residuals[0].dtype == torch.float32
