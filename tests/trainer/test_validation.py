"""The rank-0 validation hook on a stand-in codec whose output is known: the per-bitrate
numbers, and the output/input level per frequency band in the table and the tracker keys."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from trainer.validation import validate

SR = 16000


class HalfLevelNoLowBand(nn.Module):
    """Removes everything below 250 Hz, then halves the rest (more so with fewer codebooks)."""

    def forward(self, x, n_quantizers):
        spec = torch.fft.rfft(x)
        freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
        spec[..., freqs < 250] = 0
        gain = 0.5 if n_quantizers == 2 else 0.25
        return SimpleNamespace(audio=gain * torch.fft.irfft(spec, n=x.shape[-1]))


def _items():
    t = torch.arange(2 * SR) / SR
    for i in range(3):
        f0 = 100 + 20 * i
        x = 0.2 * torch.sin(2 * math.pi * f0 * t) + 0.1 * torch.sin(2 * math.pi * 1500 * t)
        yield f"item{i}", x[None], {}


def test_band_levels_show_where_the_level_is_lost():
    res = validate(
        HalfLevelNoLowBand(), _items(), [1, 2], {1: 2.0, 2: 4.0}, SR, torch.device("cpu")
    )
    at4 = res.at(2)
    assert at4.band_levels["60-120Hz"] < 1e-3 and at4.band_levels["120-250Hz"] < 1e-3
    assert math.isclose(at4.band_levels["1000-2000Hz"], 0.5, rel_tol=1e-3)
    assert math.isclose(res.at(1).band_levels["1000-2000Hz"], 0.25, rel_tol=1e-3)
    flat = res.flat()
    assert math.isclose(flat["val/4kbps/level_1000-2000Hz"], 0.5, rel_tol=1e-3)
    table = res.table()
    assert "level out/in by band (Hz): 0-60  60-120  120-250" in table
    assert any(line.strip().startswith("4 kbps") and "0.50" in line for line in table.splitlines())


class Darker(nn.Module):
    """A fixed, level- and spectrum-changing 'reconstruction' (whatever the codebook count)."""

    def forward(self, x, n_quantizers):
        return SimpleNamespace(audio=0.5 * x + 0.02 * torch.roll(x, 7, dims=-1))


def test_mel_distance_is_the_configured_training_mel():
    """Validation's mel distance (which ranks "best") is the loss's mel term under the run's
    ``loss.mel`` spec, not the default spec."""
    from codec.build import build_generator_loss
    from codec.config import LossConfig, MelSpec

    spec = MelSpec(n_mels=(20, 40), window_lengths=(256, 512), fmin=50.0, fmax=6000.0, pow=2.0)
    loss = build_generator_loss(LossConfig(mel=spec), SR)
    x = next(_items())[1].reshape(1, 1, -1)
    y = Darker()(x, 1).audio
    trained = loss(x, y, SimpleNamespace(codebook_loss=torch.zeros(()),
                                         commitment_loss=torch.zeros(())))[1]["mel"]  # fmt: skip
    res = validate(Darker(), [("a", x[0], {})], [1], {1: 2.0}, SR, torch.device("cpu"), mel=spec)
    assert math.isclose(res.at(1).mel_distance, trained.item(), rel_tol=1e-5)
    default = validate(Darker(), [("a", x[0], {})], [1], {1: 2.0}, SR, torch.device("cpu"))
    assert not math.isclose(default.at(1).mel_distance, trained.item(), rel_tol=1e-2)
