"""Molecular cross-validation scores (cellweave.metrics.denoising) against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse

from cellweave.errors import InputError
from cellweave.metrics.denoising import (
    gene_pearson_median,
    log_mse,
    molecular_split,
    poisson_deviance,
    score_proportions,
)

X2 = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0]])  # s2 = (3, 4)
P = np.array([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2]])


def test_poisson_deviance_by_hand():
    # mu = s2 * P: row 0 (1.5, 0.75, 0.75); row 1 (0.8, 2.4, 0.8)
    terms = [
        2 * (2 * np.log(2 / 1.5) - (2 - 1.5)),
        2 * (0.75),
        2 * (1 * np.log(1 / 0.75) - (1 - 0.75)),
        2 * (0.8),
        2 * (3 * np.log(3 / 2.4) - (3 - 2.4)),
        2 * (1 * np.log(1 / 0.8) - (1 - 0.8)),
    ]
    assert poisson_deviance(P, X2) == pytest.approx(np.mean(terms), rel=1e-12)
    assert poisson_deviance(P, sparse.csr_matrix(X2), per_entry=False) == pytest.approx(
        np.sum(terms), rel=1e-12
    )


def test_deviance_is_zero_at_the_observed_proportions_and_grows_away_from_them():
    exact = X2 / X2.sum(axis=1, keepdims=True)
    floored = np.maximum(exact, 1e-12)
    floored /= floored.sum(axis=1, keepdims=True)
    assert poisson_deviance(floored, X2) == pytest.approx(0.0, abs=1e-9)
    assert poisson_deviance(P, X2) > poisson_deviance(floored, X2)


def test_log_mse_by_hand():
    s2 = X2.sum(axis=1, keepdims=True)
    expected = np.mean((np.log1p(1e4 * P) - np.log1p(1e4 * X2 / s2)) ** 2)
    assert log_mse(P, X2) == pytest.approx(expected, rel=1e-12)


def test_log_mse_leaves_out_rows_without_counts():
    X2z = np.vstack([X2, np.zeros(3)])
    Pz = np.vstack([P, np.full(3, 1 / 3)])
    assert log_mse(Pz, X2z) == pytest.approx(log_mse(P, X2), rel=1e-12)


def test_gene_pearson_median_matches_corrcoef():
    rng = np.random.default_rng(0)
    X = rng.poisson(3.0, size=(30, 5)).astype(float)
    Pr = rng.dirichlet(np.ones(5), size=30)
    frac = X / X.sum(axis=1, keepdims=True)
    r = [np.corrcoef(Pr[:, j], frac[:, j])[0, 1] for j in range(5)]
    assert gene_pearson_median(Pr, X) == pytest.approx(np.median(r), rel=1e-10)


def test_score_proportions_holds_the_three_scores():
    scores = score_proportions(P, X2)
    assert set(scores) == {"deviance", "log_mse", "gene_pearson_median"}
    assert scores["deviance"] == pytest.approx(poisson_deviance(P, X2))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 3)), np.full((2, 3), np.nan), np.ones((3, 3)) / 3],
    ids=["zero", "nan", "shape"],
)
def test_invalid_proportions_are_rejected(bad):
    with pytest.raises(InputError):
        poisson_deviance(bad, X2)


@settings(max_examples=25, deadline=None)
@given(
    arrays(np.int64, (7, 4), elements=st.integers(0, 40)),
    st.integers(0, 2**31 - 1),
)
def test_split_is_numpy_binomial_and_adds_up(X, seed):
    X1, X2_ = molecular_split(sparse.csr_matrix(X), random_state=seed)
    expected = np.random.default_rng(seed).binomial(X, 0.5)
    np.testing.assert_array_equal(X1.toarray(), expected)
    np.testing.assert_array_equal((X1 + X2_).toarray(), X)
    assert X1.dtype == np.float64 and (X2_.toarray() >= 0).all()


def test_split_does_not_depend_on_the_chunk_size():
    X = np.random.default_rng(1).poisson(2.0, size=(50, 20))
    a, _ = molecular_split(X, random_state=3)
    b, _ = molecular_split(X, random_state=3, chunk_entries=40)  # two rows per chunk
    np.testing.assert_array_equal(a.toarray(), b.toarray())


def test_split_rejects_non_counts():
    with pytest.raises(InputError, match="raw counts"):
        molecular_split(np.array([[0.5, 1.0]]), random_state=0)
