"""Likelihoods against torch.distributions / scipy, and the shared layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from cellweave.nn import (
    MLP,
    GradientReversal,
    multinomial_log_prob,
    nb_log_prob,
    poisson_log_prob,
    zinb_log_prob,
)

X = torch.tensor([0.0, 1.0, 3.0, 10.0, 57.0], dtype=torch.float64)
MU = torch.tensor([0.5, 2.0, 3.0, 12.5, 40.0], dtype=torch.float64)
THETA = torch.tensor([0.3, 1.0, 5.0, 20.0, 2.0], dtype=torch.float64)


def test_poisson_matches_torch_distribution():
    expected = torch.distributions.Poisson(MU).log_prob(X)
    torch.testing.assert_close(poisson_log_prob(X, MU, eps=0.0), expected)


def test_poisson_zero_count_zero_mean_is_certain():
    value = poisson_log_prob(torch.tensor([0.0]), torch.tensor([0.0]), eps=0.0)
    assert value.item() == 0.0


def test_nb_matches_scipy():
    # scipy's nbinom(n=theta, p=theta / (theta + mu)) has mean mu
    p = (THETA / (THETA + MU)).numpy()
    expected = stats.nbinom.logpmf(X.numpy(), THETA.numpy(), p)
    np.testing.assert_allclose(nb_log_prob(X, MU, THETA, eps=0.0).numpy(), expected, rtol=1e-10)


def test_nb_matches_torch_distribution():
    # torch's NegativeBinomial(total_count=theta, logits=log(mu / theta)) has mean mu
    dist = torch.distributions.NegativeBinomial(total_count=THETA, logits=torch.log(MU / THETA))
    torch.testing.assert_close(nb_log_prob(X, MU, THETA, eps=0.0), dist.log_prob(X))


@pytest.mark.parametrize("pi", [-3.0, 0.0, 1.5])
def test_zinb_mixes_a_point_mass_at_zero(pi):
    pi_t = torch.full_like(X, pi)
    w = 1.0 / (1.0 + np.exp(-pi))  # dropout probability
    nb = stats.nbinom.pmf(X.numpy(), THETA.numpy(), (THETA / (THETA + MU)).numpy())
    expected = np.log(np.where(X.numpy() == 0, w + (1 - w) * nb, (1 - w) * nb))
    got = zinb_log_prob(X, MU, THETA, pi_t, eps=0.0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_multinomial_matches_torch_distribution():
    x = torch.tensor([[3.0, 0.0, 5.0, 1.0], [0.0, 2.0, 0.0, 0.0]], dtype=torch.float64)
    logits = torch.tensor([[0.1, -1.0, 2.0, 0.0], [1.0, 0.5, -0.5, 3.0]], dtype=torch.float64)
    expected = torch.stack(
        [
            torch.distributions.Multinomial(int(row.sum()), logits=lg).log_prob(row)
            for row, lg in zip(x, logits, strict=True)
        ]
    )
    torch.testing.assert_close(multinomial_log_prob(x, logits), expected)
    # without the constant, the difference is log n! - sum log x!
    constant = torch.lgamma(x.sum(1) + 1) - torch.lgamma(x + 1).sum(1)
    torch.testing.assert_close(
        multinomial_log_prob(x, logits, include_constant=False), expected - constant
    )


@pytest.mark.parametrize("norm", ["layer", "batch", None])
def test_mlp_shapes_and_layers(norm):
    torch.manual_seed(0)
    net = MLP(7, [16, 8], 3, norm=norm, dropout=0.2)
    out = net(torch.randn(5, 7))
    assert out.shape == (5, 3)
    kinds = {type(m).__name__ for m in net.modules()}
    assert ("LayerNorm" in kinds) == (norm == "layer")
    assert ("BatchNorm1d" in kinds) == (norm == "batch")
    assert "Dropout" in kinds
    assert MLP(4, [], 2).net[0].in_features == 4  # no hidden layer: one linear map


def test_mlp_rejects_unknown_options():
    with pytest.raises(ValueError, match="norm"):
        MLP(3, [4], 1, norm="group")
    with pytest.raises(ValueError, match="activation"):
        MLP(3, [4], 1, activation="swish")


def test_gradient_reversal_flips_and_scales_gradient():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = GradientReversal(scale=0.5)(x)
    torch.testing.assert_close(y, x.detach())
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.5, -0.5]))
