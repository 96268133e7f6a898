"""The mixture-of-programs family, the molecular-cross-validation rank, blends scored on the
inner split, and ``method="auto"`` choosing between the families."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from cellweave.errors import InputError
from cellweave.impute import auto, mixture, selection
from cellweave.impute.baselines import kl_nmf, nmf
from cellweave.impute.registry import METHODS
from cellweave.metrics.denoising import poisson_deviance


def _programs(n_spots: int, n_genes: int, k: int, depth: float, seed: int):
    """Poisson counts of spots mixing ``k`` random programs (Dirichlet loadings)."""
    rng = np.random.default_rng(seed)
    H = rng.gamma(0.5, size=(k, n_genes))
    H /= H.sum(axis=1, keepdims=True)
    theta = rng.dirichlet(np.full(k, 0.5), size=n_spots)
    truth = theta @ H
    X = rng.poisson(depth * truth).astype(np.float64)
    return sparse.csr_matrix(X), truth


@pytest.fixture(scope="module")
def sim(shallow_split_sim):
    return shallow_split_sim


def _truth_error(P, truth):
    return float(np.sqrt(np.mean((np.log1p(1e4 * P) - np.log1p(1e4 * truth)) ** 2)))


def _check_P(P, shape):
    assert P.shape == shape and np.all(np.isfinite(P)) and np.all(P > 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)


# ----------------------------------------------------------------------------- rank


@pytest.mark.parametrize("k", [1, 3, 5])
def test_mcv_rank_counts_the_programs(k):
    X, _ = _programs(600, 150, k, depth=3000.0, seed=k)
    Xa, Xb = selection.inner_split(X, random_state=0)
    rank, losses = selection.mcv_rank(Xa, Xb, return_losses=True)
    assert rank == k - 1  # k programs mixed = mean + (k - 1) components
    assert losses.shape == (41,) and losses[0] == 0.0


def test_mcv_rank_agrees_with_dense_reconstruction_errors():
    X, _ = _programs(120, 40, 3, depth=500.0, seed=0)
    Xa, Xb = selection.inner_split(X, random_state=0)
    _, losses = selection.mcv_rank(Xa, Xb, max_rank=6, return_losses=True)

    target = np.median(np.asarray(Xa.sum(axis=1)).ravel())

    def tr(M):
        M = M.toarray()
        return target * M / M.sum(axis=1, keepdims=True)

    A, B = tr(Xa), tr(Xb)
    mu = A.mean(axis=0)
    U, S, Vt = np.linalg.svd(A - mu, full_matrices=False)
    dense = [np.sum((mu + (U[:, :k] * S[:k]) @ Vt[:k] - B) ** 2) for k in range(7)]
    # randomized SVD: exact on the signal components, within 0.1% on the noise tail
    np.testing.assert_allclose(losses, np.array(dense) - dense[0], rtol=1e-3)
    assert np.argmin(losses) == np.argmin(dense) == 2


def test_mcv_rank_degenerate_shapes():
    X = sparse.csr_matrix(np.array([[3.0, 0.0, 1.0, 5.0]]))
    assert selection.mcv_rank(X, X) == 0
    with pytest.raises(InputError, match="two parts"):
        selection.mcv_rank(X, sparse.csr_matrix((2, 4)))


# ----------------------------------------------------------------------------- selection


def test_blend_deviance_equals_the_deviance_of_the_blend():
    X, _ = _programs(50, 30, 2, depth=200.0, seed=3)
    _, Xb = selection.inner_split(X, random_state=0)
    rng = np.random.default_rng(0)
    Pa, Pb = rng.dirichlet(np.ones(30), 50), rng.dirichlet(np.ones(30), 50)
    values = [selection.heldout_values(P, Xb) for P in (Pa, Pb)]
    for w in (0.0, 0.3, 1.0):
        expected = poisson_deviance(w * Pa + (1 - w) * Pb, Xb)
        assert selection.blend_deviance(values, [w, 1 - w], Xb) == pytest.approx(expected)
    with pytest.raises(InputError, match="sum to 1"):
        selection.blend_deviance(values, [0.5, 0.6], Xb)


def test_select_stops_when_worse(monkeypatch):
    X, _ = _programs(40, 20, 2, depth=100.0, seed=4)
    scores = iter([0.9, 0.5, 0.7, 0.1])  # worse at the third: the fourth is never fitted
    monkeypatch.setattr(selection, "poisson_deviance", lambda P, Xb: next(scores))
    seen = []
    uniform = np.full(X.shape, 1.0 / X.shape[1])

    def fit(Xa, Xb, params, warm):
        seen.append(params["i"])
        return uniform, params["i"]

    result = selection.select_by_inner_split(
        X, [{"i": i} for i in range(4)], fit, stop_when_worse=True
    )
    assert seen == [0, 1, 2]
    assert result.best == {"i": 1} and result.best_state == 1 and result.best_score == 0.5
    assert result.best_heldout is not None


def test_kl_nmf_warm_start_shape_is_checked():
    X, _ = _programs(20, 10, 2, depth=50.0, seed=5)
    with pytest.raises(InputError, match="init factors"):
        kl_nmf(X, rank=2, init=(np.ones((20, 3)), np.ones((3, 10))))
    W, H, _ = kl_nmf(X, rank=2, max_iter=5, random_state=0)
    W2, H2, _ = kl_nmf(X, rank=2, max_iter=0, init=(W, H))
    np.testing.assert_allclose(W2, W, rtol=1e-6)
    np.testing.assert_allclose(H2, H, rtol=1e-6)


# ----------------------------------------------------------------------------- models


def test_mixture_beats_fixed_rank_nmf_on_the_truth(sim):
    P = mixture.mixture(sim["X1"], random_state=0)
    _check_P(P, sim["X1"].shape)
    baseline = nmf(sim["X1"], random_state=0)
    assert _truth_error(P, sim["truth"]) < 0.9 * _truth_error(baseline, sim["truth"])
    assert poisson_deviance(P, sim["X2"]) < poisson_deviance(baseline, sim["X2"])


def test_mixture_options_and_errors(sim):
    chosen = mixture.mixture_select(sim["X1"], random_state=0)
    assert chosen.rank >= 1 and chosen.prior in mixture.PRIOR_GRID
    fixed = mixture.mixture_select(sim["X1"], random_state=0, rank=3, prior=5.0)
    assert fixed.rank == 3 and fixed.prior == 5.0 and len(fixed.scores) == 1
    for bad in (0, -2, 2.5, "many"):
        with pytest.raises(InputError, match="rank="):
            mixture.mixture(sim["X1"], rank=bad)


def test_auto_blends_by_the_inner_split(sim):
    P, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], random_state=0, max_epochs=5, return_info=True
    )
    _check_P(P, sim["X1"].shape)
    assert info["blend"] in auto.BLEND_GRID
    scores = info["blend_scores"]
    assert info["blend"] == min(scores, key=scores.get)
    # the blend was chosen on the inner split only; on the held-out molecules and against the
    # truth it beats the fixed-rank NMF baseline
    baseline = nmf(sim["X1"], random_state=0)
    assert poisson_deviance(P, sim["X2"]) < poisson_deviance(baseline, sim["X2"])
    assert _truth_error(P, sim["truth"]) < _truth_error(baseline, sim["truth"])


def test_auto_fixed_blend_uses_one_family(sim):
    only_mixture = auto.auto_predict(sim["X1"], coords=None, blend=0.0, random_state=0)
    np.testing.assert_allclose(only_mixture, mixture.mixture(sim["X1"], random_state=0))
    with pytest.raises(InputError, match="blend="):
        METHODS["auto"].fn(sim["X1"], coords=None, blend=1.5)
