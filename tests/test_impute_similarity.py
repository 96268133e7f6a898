"""gate_by_similarity: expression by default, or any per-spot features (e.g. histology)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from cellweave.errors import InputError
from cellweave.graph import neighbor_rings, ring_weights
from cellweave.impute.similarity import SimilarityGate, gate_by_similarity


def grid(n_side: int = 10) -> np.ndarray:
    return np.array([(i % n_side, i // n_side) for i in range(n_side**2)], dtype=float)


def test_features_gate_edges_between_groups():
    coords = grid()
    W = ring_weights(neighbor_rings(coords, max_order=1)[0], normalize=None)
    group = (coords[:, 0] >= 5).astype(int)
    rng = np.random.default_rng(0)
    features = np.column_stack([group * 3.0, np.zeros(len(group))])
    features += rng.normal(0, 0.2, features.shape)  # within-group differences of real images
    X = sparse.csr_matrix(rng.poisson(3.0, (len(coords), 8)).astype(float))
    G = gate_by_similarity(W, X, metric="gaussian", features=features).tocoo()
    across = group[G.row] != group[G.col]
    assert G.data[across].max(initial=0.0) < 0.05
    assert np.median(G.data[~across]) > 0.3
    assert gate_by_similarity(W, X, metric=None, features=features) is not None


def test_flat_regions_keep_neighbours_and_cut_boundaries():
    """Identical features up to rounding noise (flat image regions): neighbours inside a
    region keep full weight, edges across the boundary are cut."""
    coords = grid()
    W = ring_weights(neighbor_rings(coords, max_order=1)[0], normalize=None)
    region = (coords[:, 0] >= 5).astype(float)
    features = np.column_stack([region, region, 1 - region])
    features += np.random.default_rng(1).normal(0, 1e-9, features.shape)  # rounding noise
    X = sparse.csr_matrix(np.ones((100, 4)))
    G = gate_by_similarity(W, X, metric="gaussian", features=features).tocoo()
    across = region[G.row] != region[G.col]
    assert not across.any()  # cut (zero weights are dropped)
    assert G.data.min() > 0.99
    assert G.nnz == W.nnz - 2 * 10  # the 10 boundary edges, both directions


def test_features_shape_checked():
    coords = grid(4)
    W = ring_weights(neighbor_rings(coords, max_order=1)[0], normalize=None)
    with pytest.raises(InputError, match="one row of features per spot"):
        gate_by_similarity(W, None, metric="gaussian", features=np.zeros((3, 2)))


def test_similarity_gate_is_gate_by_similarity_with_its_fields():
    coords = grid(6)
    W = ring_weights(neighbor_rings(coords, max_order=1)[0], normalize=None)
    rng = np.random.default_rng(1)
    X = sparse.csr_matrix(rng.poisson(2.0, (len(coords), 12)).astype(float))
    gate = SimilarityGate("correlation", 1.0, 0.2, 5)
    expected = gate_by_similarity(
        W, X, metric="correlation", threshold=0.2, n_comps=5, random_state=3
    )
    gated = gate.apply(W, X, random_state=3)
    assert np.allclose(gated.toarray(), expected.toarray())
    assert not np.allclose(gated.toarray(), sparse.csr_matrix(W).toarray())
    assert np.allclose(SimilarityGate().apply(W, X).toarray(), sparse.csr_matrix(W).toarray())
