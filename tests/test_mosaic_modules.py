"""Torch blocks of the mosaic model: attention fusion, mixture prior, hybrid decoders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cellweave.mosaic.modules import (
    GatedAttentionFusion,
    HybridDecoder,
    MixturePrior,
    normal_log_prob,
)
from cellweave.nn import nb_log_prob


def test_attention_masks_absent_modalities():
    torch.manual_seed(0)
    fusion = GatedAttentionFusion(6)
    e = torch.randn(5, 3, 6)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], dtype=torch.bool)
    fused, w = fusion(e, mask)
    assert torch.allclose(w.sum(1), torch.ones(5))
    assert torch.all(w[~mask] == 0)
    # a cell with one modality takes its embedding as it is
    assert torch.allclose(fused[1], e[1, 0]) and torch.allclose(fused[3], e[3, 2])
    assert torch.allclose(fused[0], (w[0, :, None] * e[0]).sum(0))


def test_normal_log_prob_by_hand():
    x, m, lv = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    want = -0.5 * (2 * math.log(2 * math.pi) + 2.0 + 1.0 + math.exp(-2.0))
    assert float(normal_log_prob(x, m, lv)) == pytest.approx(want)


def _prior(mode: str, k: int = 4) -> MixturePrior:
    torch.manual_seed(0)
    return MixturePrior(3, k, 2, hidden=16, mode=mode)


@pytest.mark.parametrize("mode", ["exact", "gumbel"])
def test_mixture_kl_is_finite_and_labels_fix_the_cluster(mode):
    prior = _prior(mode)
    z = torch.randn(8, 3)
    log_qz = normal_log_prob(z, z, torch.zeros_like(z))
    kl, logits = prior.kl(z, log_qz)
    assert kl.shape == (8,) and logits.shape == (8, 4) and torch.isfinite(kl).all()
    kl.mean().backward()
    assert prior.means.grad is not None and prior.classifier.net[0].weight.grad is not None


def test_exact_and_gumbel_agree_in_expectation():
    """With q(c|z) and q(u|c,z) fixed, the Gumbel-softmax KL is an unbiased estimate of the
    exactly marginalised one (hard samples; same u distribution)."""
    exact, gumbel = _prior("exact"), _prior("gumbel")
    gumbel.load_state_dict(exact.state_dict())
    z = torch.randn(3, 3)
    log_qz = torch.zeros(3)
    torch.manual_seed(1)
    with torch.no_grad():  # many copies of the 3 cells in one call = many samples
        a = exact.kl(z.repeat(400, 1), log_qz.repeat(400))[0].view(400, 3).mean(0)
        b = gumbel.kl(z.repeat(4000, 1), log_qz.repeat(4000))[0].view(4000, 3).mean(0)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0.05, atol=0.3)


def test_labelled_cells_use_their_cluster():
    prior = _prior("exact")
    z = torch.randn(2, 3)
    log_qz = torch.zeros(2)
    labels = torch.tensor([2, -1])
    torch.manual_seed(3)
    with torch.no_grad():
        fixed = prior.kl(z.repeat(300, 1), log_qz.repeat(300), labels.repeat(300))[0]
        fixed = fixed.view(300, 2).mean(0)
        # cluster 2 forced by a one-hot classifier: same value for the labelled cell
        prior.classifier.net[-1].bias.data = torch.tensor([-50.0, -50.0, 50.0, -50.0])
        forced = prior.kl(z.repeat(300, 1), log_qz.repeat(300))[0].view(300, 2).mean(0)
    assert float(fixed[0]) == pytest.approx(float(forced[0]), rel=0.05, abs=0.2)


def test_nb_decoder_log_prob_and_expected():
    torch.manual_seed(0)
    dec = HybridDecoder(4, 6, 2, likelihood="nb", hidden=(8,))
    z, v = torch.randn(5, 4), torch.randn(6, 4)
    logits = dec.logits(z, v, 1)
    lib = torch.full((5,), 100.0)
    x = torch.poisson(torch.full((5, 6), 10.0))
    mu = lib[:, None] * torch.softmax(logits, -1)
    want = nb_log_prob(x, mu, torch.full((6,), 10.0)).sum(1)
    torch.testing.assert_close(dec.log_prob(x, logits, lib, 1), want)
    torch.testing.assert_close(dec.expected(logits, lib, 1).sum(1), lib)
    # the hybrid logits: softplus(scale) * z.V + MLP(z) + bias, per batch
    with torch.no_grad():
        dec.scale[1] = 5.0
    assert not torch.allclose(dec.logits(z, v, 0), dec.logits(z, v, 1))


def test_bernoulli_feature_subsample_is_scaled_to_all_features():
    torch.manual_seed(0)
    dec = HybridDecoder(3, 40, 1, likelihood="bernoulli", hidden=(8,), mean_library=5.0)
    z, v = torch.randn(4, 3), torch.randn(40, 3)
    x = (torch.rand(4, 40) < 0.2).float()
    lib = x.sum(1)
    full = dec.log_prob(x, dec.logits(z, v, 0), lib, 0)
    cols = torch.arange(40)
    same = dec.log_prob(x[:, cols], dec.logits(z, v, 0, cols), lib, 0, cols)
    torch.testing.assert_close(full, same)
    # the mean over every half of the features equals the full value
    halves = torch.arange(40).view(2, 20)
    est = torch.stack(
        [dec.log_prob(x[:, c], dec.logits(z, v, 0, c), lib, 0, c) for c in halves]
    ).mean(0)
    torch.testing.assert_close(est, full)
    p = dec.expected(dec.logits(z, v, 0), lib, 0)
    assert torch.all((p > 0) & (p < 1))
