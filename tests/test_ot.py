"""cellweave.ot: costs, candidate pairs, Sinkhorn (dense, sparse, unbalanced), exact OT and
plans, checked on known answers and against POT, for numpy and torch inputs on CPU (and CUDA
when present). FGW: tests/test_ot_fgw.py."""

from __future__ import annotations

import itertools

import numpy as np
import ot as pot
import pytest
import torch
from scipy import sparse
from scipy.spatial.distance import cdist

from cellweave import ot
from cellweave.errors import InputError

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]
BACKENDS = ["numpy", "torch"]


def to_backend(backend: str, device: str, *arrays):
    """The arrays as numpy, or as float64 torch tensors on ``device``."""
    if backend == "numpy":
        return arrays
    return tuple(torch.as_tensor(x, device=device) for x in arrays)


def host(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def test_cellweave_ot_is_not_pot():
    # the package shares its last name with POT's; absolute imports keep them apart
    assert ot.__name__ == "cellweave.ot" and pot.__name__ == "ot"
    assert callable(ot.sinkhorn) and hasattr(pot, "emd")


# ------------------------------------------------------------------------- Sinkhorn (moved)


def _random_problem(n=12, m=9, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.random((n, m))
    return C, np.full(n, 1.0 / n), np.full(m, 1.0 / m)


def test_sinkhorn_balanced_marginals_and_matches_pot():
    import ot as pot

    C, a, b = _random_problem()
    P = ot.sinkhorn(C, a, b, epsilon=0.05, device="cpu")
    np.testing.assert_allclose(P.sum(1), a, atol=1e-7)
    np.testing.assert_allclose(P.sum(0), b, atol=1e-7)
    ref = pot.sinkhorn(a, b, C, 0.05, method="sinkhorn_log", numItermax=10000, stopThr=1e-12)
    np.testing.assert_allclose(P, ref, atol=1e-7)


def test_sinkhorn_small_epsilon_recovers_permutation():
    rng = np.random.default_rng(3)
    perm = rng.permutation(8)
    C = np.ones((8, 8))
    C[np.arange(8), perm] = 0.0
    P = ot.sinkhorn(C, np.full(8, 1 / 8), np.full(8, 1 / 8), epsilon=0.01, device="cpu")
    np.testing.assert_array_equal(P.argmax(1), perm)


@pytest.mark.filterwarnings("ignore:If reg_type = entropy:UserWarning")
def test_sinkhorn_unbalanced_handles_unequal_totals_and_matches_pot():
    import ot as pot

    C, a, b = _random_problem(seed=1)
    b = 2 * b  # twice the mass on the spot side
    with pytest.raises(InputError, match="equal totals"):
        ot.sinkhorn(C, a, b, epsilon=0.05, device="cpu")
    P = ot.sinkhorn(C, a, b, epsilon=0.05, rho_a=1.0, rho_b=1.0, device="cpu")
    ref = pot.unbalanced.sinkhorn_unbalanced(
        a,
        b,
        C,
        0.05,
        1.0,
        method="sinkhorn_stabilized",
        reg_type="entropy",
        numItermax=20000,
        stopThr=1e-12,
    )
    np.testing.assert_allclose(P, ref, rtol=1e-4, atol=1e-9)
    assert a.sum() < P.sum() < b.sum()  # in between: neither marginal is forced


def test_semi_relaxed_marginal_exact_on_one_side_only():
    C, a, b = _random_problem(seed=2)
    P = ot.sinkhorn(C, a, b, epsilon=0.05, rho_a=0.0, device="cpu")  # cells free
    np.testing.assert_allclose(P.sum(0), b, atol=1e-9)
    assert np.abs(P.sum(1) - a).max() > 1e-3


@pytest.mark.parametrize("rho", [None, 0.5])
def test_sparse_sinkhorn_on_all_pairs_equals_dense(rho):
    C, a, b = _random_problem(seed=4)
    rows, cols = np.nonzero(np.ones_like(C))
    dense = ot.sinkhorn(C, a, b, epsilon=0.1, rho_a=rho, rho_b=rho, device="cpu")
    values = ot.sparse_sinkhorn(
        rows, cols, C[rows, cols], a, b, epsilon=0.1, rho_a=rho, rho_b=rho, device="cpu"
    )
    np.testing.assert_allclose(values, dense[rows, cols], rtol=1e-6, atol=1e-12)


def test_topk_similar_matches_brute_force():
    rng = np.random.default_rng(7)
    A, B = rng.normal(size=(30, 4)), rng.normal(size=(50, 4))
    idx, sims = ot.topk_similar(A, B, k=5, device="cpu")
    brute = np.argsort(-(A @ B.T), axis=1)[:, :5]
    np.testing.assert_array_equal(idx, brute)
    np.testing.assert_allclose(sims, np.take_along_axis(A @ B.T, brute, 1), rtol=1e-5)


# ------------------------------------------------------------------ Sinkhorn: backends


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_sinkhorn_backends_agree_with_pot_and_keep_the_input_type(backend, device):
    C, a, b = _random_problem(n=15, m=11, seed=11)
    Cb, ab, bb = to_backend(backend, device, C, a, b)
    P = ot.sinkhorn(Cb, ab, bb, epsilon=0.05, tol=1e-10, device=device)
    assert isinstance(P, torch.Tensor) == (backend == "torch")
    if backend == "torch":
        assert P.device.type == device
    P = host(P)
    np.testing.assert_allclose(P.sum(1), a, atol=1e-9)
    np.testing.assert_allclose(P.sum(0), b, atol=1e-9)
    ref = pot.sinkhorn(a, b, C, 0.05, method="sinkhorn_log", numItermax=10000, stopThr=1e-13)
    np.testing.assert_allclose(P, ref, atol=1e-9)
    # POT's scaling solver, handed the same backend, finds the same plan
    Q = ot.sinkhorn(Cb, ab, bb, epsilon=0.05, tol=1e-13, max_iter=10000, solver="pot")
    assert isinstance(Q, torch.Tensor) == (backend == "torch")
    np.testing.assert_allclose(host(Q), P, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_sinkhorn_on_full_candidates_equals_dense(backend, device):
    C, a, b = _random_problem(n=10, m=14, seed=12)
    rows, cols = np.nonzero(np.ones_like(C))
    Cb, ab, bb, rb, cb, costb = to_backend(backend, device, C, a, b, rows, cols, C[rows, cols])
    for rho in (None, 0.3):
        dense = host(ot.sinkhorn(Cb, ab, bb, epsilon=0.1, rho_a=rho, rho_b=rho, device=device))
        values = ot.sparse_sinkhorn(
            rb, cb, costb, ab, bb, epsilon=0.1, rho_a=rho, rho_b=rho, device=device
        )
        assert isinstance(values, torch.Tensor) == (backend == "torch")
        np.testing.assert_allclose(host(values), dense[rows, cols], rtol=1e-6, atol=1e-12)


@pytest.mark.filterwarnings("ignore:If reg_type = entropy:UserWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_unbalanced_relaxation_interpolates_between_free_and_balanced(backend):
    C, a, b = _random_problem(seed=13)
    Cb, ab, bb = to_backend(backend, "cpu", C, a, b)
    # rho = 0: both marginals free, the entropy term alone: P = exp(-C / eps)
    free = host(ot.sinkhorn(Cb, ab, bb, epsilon=0.05, rho_a=0.0, rho_b=0.0))
    np.testing.assert_allclose(free, np.exp(-C / 0.05), rtol=1e-12)
    balanced = host(ot.sinkhorn(Cb, ab, bb, epsilon=0.05, tol=1e-12))
    gaps = []
    for rho in (0.1, 1.0, 10.0, 100.0):
        opts = dict(epsilon=0.05, rho_a=rho, rho_b=rho, max_iter=50000)
        P = host(ot.sinkhorn(Cb, ab, bb, tol=1e-11, **opts))
        ref = pot.unbalanced.sinkhorn_unbalanced(
            a, b, C, 0.05, rho, reg_type="entropy", method="sinkhorn_stabilized",
            numItermax=50000, stopThr=1e-13,
        )  # fmt: skip
        np.testing.assert_allclose(P, ref, rtol=1e-6, atol=1e-12)
        Q = host(ot.sinkhorn(Cb, ab, bb, tol=1e-13, solver="pot", **opts))
        np.testing.assert_allclose(Q, P, rtol=1e-6, atol=1e-12)
        gaps.append(np.abs(P - balanced).sum())
    # the stronger the relaxation's weight, the closer to the balanced plan
    assert all(x > y for x, y in itertools.pairwise(gaps)) and gaps[-1] < 0.02 * gaps[0]


def test_auto_solver_hands_moderate_balanced_problems_to_pot_only(monkeypatch):
    C, a, b = _random_problem(seed=24)
    calls = []
    real = pot.sinkhorn

    def counted(*args, **kwargs):
        calls.append(kwargs.get("stopThr"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pot, "sinkhorn", counted)
    P = ot.sinkhorn(C, a, b, epsilon=0.05)  # cost spread / eps < 20: POT
    assert len(calls) == 1 and calls[0] == pytest.approx(1e-7 * np.linalg.norm(b))
    np.testing.assert_allclose(P, ot.sinkhorn(C, a, b, epsilon=0.05, solver="log"), atol=1e-7)
    calls.clear()
    ot.sinkhorn(C, a, b, epsilon=np.ptp(C) / 300)  # spread beyond POT_MAX_RANGE epsilons: log
    ot.sinkhorn(C, a, b, epsilon=0.05, rho_a=1.0, rho_b=1.0)  # relaxed marginals: log
    ot.sinkhorn(C, a, b, epsilon=0.05, stop="marginal")  # the log loop's own rule
    assert not calls
    # a POT result that is not finite falls back to the log-domain loop
    monkeypatch.setattr(pot, "sinkhorn", lambda *args, **kwargs: np.full(C.shape, np.nan))
    P = ot.sinkhorn(C, a, b, epsilon=0.05)
    np.testing.assert_allclose(P.sum(1), a, atol=1e-7)


def test_semi_relaxed_free_side_and_hard_side():
    C, a, b = _random_problem(seed=14)
    P = ot.sinkhorn(C, a, b, epsilon=0.02, rho_a=None, rho_b=0.0, device="cpu")
    np.testing.assert_allclose(P.sum(1), a, atol=1e-9)  # rows exact
    # columns free: each row sends its mass to its cheapest columns (a softmin of its costs)
    expected = a[:, None] * np.exp(-C / 0.02) / np.exp(-C / 0.02).sum(1, keepdims=True)
    np.testing.assert_allclose(P, expected, rtol=1e-9, atol=1e-15)


def test_warm_start_from_potentials_needs_few_iterations():
    C, a, b = _random_problem(seed=15)
    P, (f, g) = ot.sinkhorn(C, a, b, epsilon=0.05, tol=1e-10, return_potentials=True)
    again = ot.sinkhorn(C, a, b, epsilon=0.05, init=(f, g), max_iter=2)
    np.testing.assert_allclose(again, P, atol=1e-12)
    cold = ot.sinkhorn(C, a, b, epsilon=0.05, max_iter=2)
    assert np.abs(cold - P).max() > 1e-6


def test_marginal_stopping_rule_meets_its_tolerance():
    C, a, b = _random_problem(seed=16)
    P = ot.sinkhorn(C, a, b, epsilon=0.05, tol=1e-11, stop="marginal")
    assert np.linalg.norm(P.sum(1) - a) < 1e-11
    with pytest.raises(InputError, match="stop"):
        ot.sinkhorn(C, a, b, stop="never")


def test_sinkhorn_rejects_bad_inputs():
    C, a, b = _random_problem(seed=17)
    with pytest.raises(InputError, match="epsilon"):
        ot.sinkhorn(C, a, b, epsilon=0.0)
    with pytest.raises(InputError, match="non-negative"):
        ot.sinkhorn(C, -a, b)
    with pytest.raises(InputError, match=">= 0"):
        ot.sinkhorn(C, a, b, rho_a=-1.0)
    with pytest.raises(InputError, match="solver"):
        ot.sinkhorn(C, a, b, solver="magic")
    with pytest.raises(InputError, match="warm start"):
        ot.sinkhorn(C, a, b, solver="pot", return_potentials=True)


def test_small_epsilon_approaches_the_exact_plan():
    rng = np.random.default_rng(18)
    x, y = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    C = ot.sqeuclidean_cost(x, y)
    C = C / C.max()
    a = b = np.full(20, 1 / 20)
    exact = ot.exact_transport(C, a, b)
    entropic = ot.sinkhorn(C, a, b, epsilon=1e-3, max_iter=20000, tol=1e-9)
    assert (exact * C).sum() <= (entropic * C).sum() < (exact * C).sum() + 0.01
    np.testing.assert_array_equal(entropic.argmax(1), exact.argmax(1))


# ------------------------------------------------------------------------------- exact


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_transport_matches_pot_solve(backend, device):
    rng = np.random.default_rng(19)
    C = rng.random((9, 7))
    a, b = rng.random(9), rng.random(7)
    a, b = a / a.sum(), b / b.sum()
    Cb, ab, bb = to_backend(backend, device, C, a, b)
    plan = ot.exact_transport(Cb, ab, bb)
    assert isinstance(plan, torch.Tensor) == (backend == "torch")
    ref = pot.solve(C, a, b).plan
    np.testing.assert_allclose((host(plan) * C).sum(), (ref * C).sum(), rtol=1e-12)
    np.testing.assert_allclose(host(plan).sum(1), a, atol=1e-12)


def test_exact_transport_recovers_a_permutation():
    perm = np.random.default_rng(20).permutation(10)
    C = np.ones((10, 10))
    C[np.arange(10), perm] = 0.0
    plan = ot.exact_transport(C, np.full(10, 0.1), np.full(10, 0.1))
    np.testing.assert_allclose(plan, np.eye(10)[perm] * 0.1)


# ------------------------------------------------------------------------------- costs


def test_costs_match_scipy():
    rng = np.random.default_rng(21)
    A, B = rng.normal(size=(7, 4)), rng.normal(size=(5, 4))
    np.testing.assert_allclose(ot.cosine_cost(A, B), cdist(A, B, "cosine"), atol=1e-6)
    np.testing.assert_allclose(ot.sqeuclidean_cost(A, B), cdist(A, B, "sqeuclidean"))
    np.testing.assert_allclose(np.linalg.norm(ot.unit_rows(A), axis=1), 1.0, rtol=1e-6)
    assert ot.unit_rows(np.zeros((2, 3))).sum() == 0  # zero rows stay zero
    rows, cols = np.array([0, 3, 6, 6]), np.array([4, 0, 1, 4])
    np.testing.assert_allclose(
        ot.pair_cost(A, B, rows, cols), cdist(A, B, "sqeuclidean")[rows, cols]
    )
    np.testing.assert_allclose(
        ot.pair_cost(A, B, rows, cols, metric="cosine"),
        cdist(A, B, "cosine")[rows, cols],
        atol=1e-6,
    )
    C = ot.sqeuclidean_cost(A, B)
    assert ot.normalize_cost(C).max() == pytest.approx(1.0)
    assert ot.normalize_cost(C, by="mean").mean() == pytest.approx(1.0)
    with pytest.raises(InputError, match="metric"):
        ot.pair_cost(A, B, rows, cols, metric="manhattan")


def test_nearest_pairs_cover_both_sides_with_their_squared_distances():
    rng = np.random.default_rng(22)
    A, B = rng.normal(size=(40, 3)), rng.normal(size=(25, 3))
    rows, cols, cost = ot.nearest_pairs(A, B, k=4)
    D = cdist(A, B, "sqeuclidean")
    np.testing.assert_allclose(cost, D[rows, cols])
    assert len(set(zip(rows, cols, strict=True))) == len(rows)  # no duplicates
    assert (np.bincount(rows, minlength=40) >= 4).all()
    assert (np.bincount(cols, minlength=25) >= 4).all()
    for i in range(40):  # each row's 4 nearest columns are among its pairs
        assert set(np.argsort(D[i])[:4]) <= set(cols[rows == i])
    assert np.all(np.diff(rows * 25 + cols) > 0)  # sorted by row, then column


# ------------------------------------------------------------------------------- plans


def test_barycentric_projection_of_a_permutation_plan_moves_points_onto_their_partners():
    rng = np.random.default_rng(23)
    target = rng.normal(size=(6, 2))
    perm = rng.permutation(6)
    plan = ot.TransportPlan.from_dense(np.eye(6)[perm] / 6)
    np.testing.assert_allclose(plan.barycentric_projection(target), target[perm])
    np.testing.assert_allclose(plan.row_mass, 1 / 6)
    np.testing.assert_allclose(plan.col_mass, 1 / 6)


def test_barycentric_projection_averages_and_leaves_empty_rows_undefined():
    target = np.array([[0.0, 0.0], [2.0, 4.0], [10.0, 10.0]])
    plan = ot.TransportPlan.from_pairs(
        torch.tensor([0, 0, 2]), np.array([0, 1, 2]), np.array([0.25, 0.75, 1.0]), (3, 3)
    )
    out = plan.barycentric_projection(target)
    np.testing.assert_allclose(out[0], [1.5, 3.0])  # 0.25 * (0, 0) + 0.75 * (2, 4)
    assert np.isnan(out[1]).all()  # no mass
    np.testing.assert_allclose(out[2], [10.0, 10.0])
    with pytest.raises(InputError, match="one per column point"):
        plan.barycentric_projection(target[:2])


def test_sparse_plan_drops_negligible_entries_only():
    P = np.array([[0.5, 1e-15], [0.0, 0.5]])
    S = ot.sparse_plan(torch.as_tensor(P))
    assert sparse.isspmatrix_csr(S) and S.nnz == 2
    np.testing.assert_allclose(S.toarray(), [[0.5, 0.0], [0.0, 0.5]])
    assert P[0, 1] == 1e-15  # the input is not changed
    assert ot.sparse_plan(P, drop_below=0.0).nnz == 3
