"""cellweave.ot FGW: agreement with POT, marginals, planted matchings, bad input."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from cellweave.errors import InputError
from cellweave.ot import (
    MAX_ENTRIES,
    check_fgw_size,
    exact_transport,
    fused_gromov_wasserstein,
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


def problem(n1: int, n2: int, seed: int = 0):
    """Random points in the plane with 3 features each; costs scaled to max 1."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(n1, 2)), rng.normal(size=(n2, 2))
    f1, f2 = rng.normal(size=(n1, 3)), rng.normal(size=(n2, 3))
    C1, C2, M = cdist(x1, x1), cdist(x2, x2), cdist(f1, f2)
    return M / M.max(), C1 / C1.max(), C2 / C2.max()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("alpha", [0.2, 0.8])
@pytest.mark.parametrize("shape", [(15, 15), (18, 11)])
def test_exact_agrees_with_pot(device, alpha, shape):
    M, C1, C2 = problem(*shape, seed=shape[1])
    expected, log = ot.gromov.fused_gromov_wasserstein(M, C1, C2, alpha=alpha, log=True)
    plan, ours = fused_gromov_wasserstein(M, C1, C2, alpha=alpha, device=device, return_log=True)
    np.testing.assert_allclose(plan, expected, atol=1e-8)
    assert ours.objective == pytest.approx(float(log["fgw_dist"]), rel=1e-8)
    assert ours.converged


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("alpha", [0.2, 0.8])
def test_entropic_agrees_with_pot(device, alpha):
    M, C1, C2 = problem(16, 12, seed=3)
    expected = ot.gromov.entropic_fused_gromov_wasserstein(
        M, C1, C2, alpha=alpha, epsilon=0.05, max_iter=1000, tol=1e-11
    )
    plan = fused_gromov_wasserstein(M, C1, C2, alpha=alpha, epsilon=0.05, tol=1e-11, device=device)
    np.testing.assert_allclose(plan, expected, atol=1e-7)


def test_partial_exact_agrees_with_pot():
    M, C1, C2 = problem(14, 10, seed=5)
    a, b = ot.unif(14), ot.unif(10)
    expected = ot.gromov.partial_fused_gromov_wasserstein(M, C1, C2, a, b, m=0.6, alpha=0.5)
    plan = fused_gromov_wasserstein(M, C1, C2, alpha=0.5, a=a, b=b, mass=0.6)
    np.testing.assert_allclose(plan, expected, atol=1e-8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("epsilon", [None, 0.02])
@pytest.mark.parametrize("mass", [None, 0.5])
def test_marginals(device, epsilon, mass):
    M, C1, C2 = problem(13, 9, seed=7)
    rng = np.random.default_rng(1)
    a = rng.random(13) + 0.1
    b = rng.random(9) + 0.1
    a, b = a / a.sum(), b / b.sum()
    plan = fused_gromov_wasserstein(
        M, C1, C2, alpha=0.5, epsilon=epsilon, a=a, b=b, mass=mass, device=device
    )
    assert plan.shape == (13, 9)
    assert (plan >= 0).all()
    atol = 1e-8 if epsilon is None else 1e-6
    if mass is None:
        np.testing.assert_allclose(plan.sum(axis=1), a, atol=atol)
        np.testing.assert_allclose(plan.sum(axis=0), b, atol=atol)
    else:
        assert plan.sum() == pytest.approx(mass, abs=1e-6)
        assert (plan.sum(axis=1) <= a + 1e-6).all()
        assert (plan.sum(axis=0) <= b + 1e-6).all()


@pytest.mark.parametrize("epsilon", [None, 0.05])
def test_planted_permutation_is_recovered(epsilon):
    """Space 2 is space 1 with its points permuted: the plan must be that permutation."""
    n = 20
    rng = np.random.default_rng(11)
    x = rng.normal(size=(n, 2))
    features = rng.normal(size=(n, 4))
    perm = rng.permutation(n)
    C1 = cdist(x, x)
    C2 = C1[np.ix_(perm, perm)]
    M = cdist(features, features[perm] + 0.05 * rng.normal(size=(n, 4)))
    plan = fused_gromov_wasserstein(
        M / M.max(), C1 / C1.max(), C2 / C1.max(), alpha=0.5, epsilon=epsilon
    )
    # point i of space 1 is point j of space 2 where perm[j] == i
    assert (plan.argmax(axis=1) == np.argsort(perm)).all()


def test_pure_gromov_without_features_and_n_init():
    _, C1, C2 = problem(12, 12, seed=2)
    single = fused_gromov_wasserstein(None, C1, C2, alpha=1.0, return_log=True)[1]
    several = fused_gromov_wasserstein(None, C1, C2, alpha=1.0, n_init=4, return_log=True)[1]
    assert several.objective <= single.objective + 1e-12


@settings(max_examples=15, deadline=None)
@given(
    n1=st.integers(2, 12),
    n2=st.integers(2, 12),
    frac=st.floats(0.1, 1.0),
    seed=st.integers(0, 1000),
)
def test_exact_transport_partial_constraints(n1, n2, frac, seed):
    rng = np.random.default_rng(seed)
    cost = rng.normal(size=(n1, n2))
    a, b = np.full(n1, 1.0 / max(n1, n2)), np.full(n2, 1.0 / max(n1, n2))
    mass = frac * min(a.sum(), b.sum())
    plan = exact_transport(cost, a, b, mass=mass)
    assert plan.sum() == pytest.approx(mass, abs=1e-9)
    assert (plan.sum(axis=1) <= a + 1e-12).all() and (plan.sum(axis=0) <= b + 1e-12).all()
    # optimal: no cheaper plan with the same mass among greedy exchanges -> compare with POT
    expected = ot.partial.partial_wasserstein(a, b, cost - cost.min(), m=mass)
    assert (plan * cost).sum() == pytest.approx((expected * cost).sum(), abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"M": np.zeros((3, 4))}, "n1 x n2"),
        ({"C1": np.ones((5, 4))}, "square"),
        ({"C1": np.full((5, 5), np.nan)}, "NaN"),
        ({"alpha": 1.5}, "alpha"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"M": None}, "alpha=1"),
        ({"a": np.full(5, 0.5)}, "balanced"),
        ({"mass": 2.0}, "mass"),
        ({"max_entries": 10}, "subsample"),
    ],
)
def test_bad_input(kwargs, match):
    M, C1, C2 = problem(5, 6)
    args = {"M": M, "C1": C1, "C2": C2, "alpha": 0.5}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        fused_gromov_wasserstein(args.pop("M"), args.pop("C1"), args.pop("C2"), **args)


def test_size_check_names_the_fix():
    check_fgw_size(1000, 1000)
    with pytest.raises(InputError, match="method='ot'") as err:
        check_fgw_size(20_000, 50)  # the 20000 x 20000 distance matrix is too large
    assert "\n" not in str(err.value)
    assert 20_000**2 > MAX_ENTRIES
