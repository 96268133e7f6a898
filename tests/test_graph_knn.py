"""Tests of cellweave.graph.nearest_neighbors against sklearn's exact (brute-force) search."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from cellweave.errors import EmptyDataError, InputError
from cellweave.graph import nearest_neighbors


def brute(data, query, k, metric="euclidean"):
    nn = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(data)
    return nn.kneighbors(query)


@pytest.mark.parametrize("n_dims", [2, 3, 40])
@pytest.mark.parametrize("backend", ["auto", "kdtree", "sklearn", "brute"])
def test_agrees_with_sklearn_exact(n_dims, backend):
    rng = np.random.default_rng(n_dims)
    x = rng.normal(size=(300, n_dims))
    dist, idx = nearest_neighbors(x, 7, backend=backend)
    ref_dist, ref_idx = brute(x, x, 7)
    assert dist.shape == idx.shape == (300, 7)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-6)
    np.testing.assert_array_equal(idx, ref_idx)  # continuous data: no ties
    np.testing.assert_array_equal(idx[:, 0], np.arange(300))  # self first
    assert np.all(np.diff(dist, axis=1) >= 0)


@pytest.mark.parametrize("backend", ["auto", "kdtree", "sklearn"])
def test_query_points(backend):
    rng = np.random.default_rng(1)
    x, q = rng.uniform(size=(200, 2)), rng.uniform(size=(50, 2))
    dist, idx = nearest_neighbors(x, 3, query=q, backend=backend)
    ref_dist, ref_idx = brute(x, q, 3)
    assert idx.shape == (50, 3)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-6)
    np.testing.assert_array_equal(idx, ref_idx)
    # k = 1 still gives 2-D arrays
    d1, i1 = nearest_neighbors(x, 1, query=q, backend=backend)
    assert i1.shape == d1.shape == (50, 1)
    np.testing.assert_array_equal(i1[:, 0], ref_idx[:, 0])


@pytest.mark.parametrize("backend", ["kdtree", "sklearn"])
def test_exclude_self(backend):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 4))
    dist, idx = nearest_neighbors(x, 5, include_self=False, backend=backend)
    ref_dist, ref_idx = brute(x, x, 6)
    np.testing.assert_array_equal(idx, ref_idx[:, 1:])
    np.testing.assert_allclose(dist, ref_dist[:, 1:], atol=1e-6)
    assert not (idx == np.arange(120)[:, None]).any()


def test_exclude_self_with_duplicates():
    # three copies of one point: each must lose exactly one list entry and never list itself
    x = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 0.0], [9.0, 0.0]])
    dist, idx = nearest_neighbors(x, 2, include_self=False)
    assert idx.shape == (5, 2)
    for i in range(3):
        assert i not in idx[i]
        assert set(idx[i]) == {0, 1, 2} - {i}
        np.testing.assert_array_equal(dist[i], [0.0, 0.0])
    assert idx[4, 0] == 3 and dist[4, 0] == 4.0
    assert idx[4, 1] in {0, 1, 2} and dist[4, 1] == 9.0


def test_cosine_metric():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 10))
    dist, idx = nearest_neighbors(x, 4, metric="cosine")
    ref_dist, ref_idx = brute(x, x, 4, metric="cosine")
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-6)


def test_max_distance():
    rng = np.random.default_rng(5)
    x, q = rng.uniform(size=(300, 2)), rng.uniform(size=(40, 2))
    dist, idx = nearest_neighbors(x, 10, query=q, max_distance=0.05)
    ref_dist, ref_idx = brute(x, q, 10)
    within = ref_dist <= 0.05
    np.testing.assert_array_equal(idx[within], ref_idx[within])
    assert np.all(idx[~within] == 300) and np.all(np.isinf(dist[~within]))
    with pytest.raises(InputError, match="max_distance"):
        nearest_neighbors(x, 3, max_distance=0.1, backend="sklearn")


def test_integer_points():
    x = np.array([[0, 0], [3, 4], [1, 0], [10, 10]])
    dist, idx = nearest_neighbors(x, 1, include_self=False)
    np.testing.assert_array_equal(idx[:, 0], [2, 2, 0, 1])
    np.testing.assert_allclose(dist[:, 0], [1.0, np.hypot(2, 4), 1.0, np.hypot(7, 6)])


def test_errors():
    x = np.zeros((4, 2))
    with pytest.raises(InputError, match="k <= 3"):
        nearest_neighbors(x, 4, include_self=False)
    with pytest.raises(InputError, match="k <= 4"):
        nearest_neighbors(x, 5)
    with pytest.raises(InputError, match="integer"):
        nearest_neighbors(x, 1.5)
    with pytest.raises(InputError, match="columns"):
        nearest_neighbors(x, 1, query=np.zeros((2, 3)))
    with pytest.raises(InputError, match="Euclidean"):
        nearest_neighbors(x, 1, metric="cosine", backend="kdtree")
    with pytest.raises(InputError, match="backend"):
        nearest_neighbors(x, 1, backend="faiss")
    with pytest.raises(EmptyDataError):
        nearest_neighbors(np.zeros((0, 2)), 1)
