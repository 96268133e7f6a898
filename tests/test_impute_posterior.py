"""``auto``'s last two steps: the expression-space smoother blended in by the inner split and
each spot's own counts on top (the Gamma-Poisson posterior mean)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from cellweave.errors import InputError
from cellweave.impute import auto
from cellweave.impute.posterior import MIN_INVERSE_SHAPE, extra_poisson_variance, posterior_mean
from cellweave.impute.registry import METHODS
from cellweave.metrics.denoising import poisson_deviance

FAST = {"max_epochs": 5}


def _reference(X, P):
    """The module docstring's formula written out on dense arrays."""
    D = X.toarray()
    s = D.sum(axis=1, keepdims=True)
    mu = s * P
    inverse = np.maximum(((D - mu) ** 2 - D).sum(axis=0) / (mu**2).sum(axis=0), MIN_INVERSE_SHAPE)
    a = 1.0 / inverse
    Q = P * (D + a) / (s * P + a)
    return Q / Q.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def overdispersed():
    """Spots whose truth strays from the prior for the first 5 genes only (the prior has
    their mean over spots; the other genes are exact)."""
    rng = np.random.default_rng(0)
    n, g = 300, 40
    truth = np.tile(rng.dirichlet(np.ones(g)), (n, 1))
    truth[:, :5] *= rng.gamma(2.0, 0.5, size=(n, 5))  # extra-Poisson variation
    truth /= truth.sum(axis=1, keepdims=True)
    prior = truth.copy()  # the first 5 genes: their mean shares, the same total per spot
    shares = truth[:, :5].mean(axis=0)
    prior[:, :5] = np.outer(truth[:, :5].sum(axis=1), shares / shares.sum())
    X = sparse.csr_matrix(rng.poisson(2000 * truth).astype(np.float64))
    return X, prior, truth


@pytest.fixture(scope="module")
def sim(shallow_split_sim):
    return shallow_split_sim


def test_posterior_mean_is_the_gamma_poisson_formula(overdispersed):
    X, P, _ = overdispersed
    expected = _reference(X, P)
    np.testing.assert_allclose(posterior_mean(X, P), expected, rtol=1e-12)
    inplace = P.copy()
    assert posterior_mean(X, inplace, out=inplace) is inplace
    np.testing.assert_allclose(inplace, expected, rtol=1e-12)


def test_posterior_keeps_own_counts_only_where_the_model_misses(overdispersed):
    X, P, truth = overdispersed
    inverse = extra_poisson_variance(X, P)
    assert inverse[:5].min() > 100 * np.median(inverse[5:])  # the genes the prior misses
    Q = posterior_mean(X, P)
    error = lambda M: np.abs(np.log(M) - np.log(truth))  # noqa: E731
    # the missed genes move towards the truth, the others stay at the prior
    assert error(Q)[:, :5].mean() < 0.7 * error(P)[:, :5].mean()
    others = lambda M: M[:, 5:] / M[:, 5:].sum(axis=1, keepdims=True)  # noqa: E731
    assert np.abs(np.log(others(Q) / others(P))).mean() < 0.01


def test_auto_chooses_the_smoother_share_and_ends_with_the_posterior(sim):
    P, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], random_state=0, return_info=True, **FAST
    )
    assert np.isfinite(P).all() and (P > 0).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
    scores = info["smooth_scores"]
    assert sorted(scores) == sorted(auto.SMOOTH_GRID)
    assert info["smooth"] == min(scores, key=scores.get)
    assert info["chosen"]["smooth"] == info["smooth"] and info["chosen"]["posterior"] is True
    # the posterior step lowers the held-out deviance on the same fit
    off = auto.auto_predict(
        sim["X1"], coords=sim["coords"], random_state=0, posterior="off", **FAST
    )
    assert poisson_deviance(P, sim["X2"]) < poisson_deviance(off, sim["X2"])


def test_auto_fixed_blend_or_dropout_likelihood_skip_both_steps(sim):
    _, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], blend=1.0, random_state=0, return_info=True, **FAST
    )
    assert info["smooth"] == 0.0 and info["chosen"]["posterior"] is False
    _, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], likelihood="zinb", random_state=0, return_info=True,
        **FAST,
    )  # fmt: skip
    assert info["chosen"] == {**info["chosen"], "blend": 1.0, "smooth": 0.0, "posterior": False}
    _, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], blend=1.0, smooth=0.5, random_state=0,
        return_info=True, **FAST,
    )  # fmt: skip
    assert info["smooth"] == 0.5 and info["smooth_scores"] == {}


def test_auto_smooth_and_posterior_options_are_checked(sim):
    with pytest.raises(InputError, match="smooth="):
        auto.auto_predict(sim["X1"], coords=sim["coords"], smooth=1.5)
    with pytest.raises(InputError, match="posterior"):
        METHODS["auto"].check_options({"posterior": "maybe"})
    assert METHODS["auto"].check_options({"smooth": [0, 0.5], "posterior": "off"}) == {
        "smooth": [0.0, 0.5],
        "posterior": "off",
    }
