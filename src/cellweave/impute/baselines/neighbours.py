"""Neighbour smoothers: ``knn`` and ``diffusion`` (MAGIC-like) in expression space,
``spatial_knn`` and ``rings`` on the tissue."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from ... import graph as _graph
from ...errors import InputError
from ...graph import nearest_neighbors
from ..proportions import require_coords
from ..similarity import Metric, SimilarityGate, expression_features
from ..spatial_loss import ring_orders
from .reference import gene_mean
from .smoothing import NON_SPATIAL, PRIOR, Average, check_k, library, smooth

__all__ = ["diffusion", "knn", "rings", "spatial_knn"]


def _knn_indices(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances to and indices of the ``k`` nearest spots of every spot (the spot
    itself among them unless duplicates tie with it); ``k`` is capped at the number of
    spots. A k-d tree for coordinates, brute force (or a tree for many spots) for features."""
    n = features.shape[0]
    k = min(k, n)
    if features.shape[1] <= 3:
        backend = "kdtree"
    else:
        backend = "brute" if n < 5000 else "sklearn"
    return nearest_neighbors(features, k, backend=backend)


def _unit_rows(features: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(features, axis=1, keepdims=True)
    return np.divide(features, norm, out=np.zeros_like(features), where=norm > 0)


def _self_included(idx: np.ndarray, weights: np.ndarray, n: int) -> sparse.csr_matrix:
    """Sparse weights from neighbour lists, with the spot itself forced in (weight 1)."""
    rows = np.repeat(np.arange(n), idx.shape[1])
    W = sparse.csr_matrix((weights.ravel(), (rows, idx.ravel())), shape=(n, n))
    return sparse.csr_matrix(W + sparse.diags(np.maximum(1.0 - W.diagonal(), 0.0)))


def _expression_space(X1, n_comps, random_state):
    """Which spots have counts, and the expression features (PCA) of all spots (zeros for
    the spots without counts)."""
    has = library(X1) > 0
    features = np.zeros((X1.shape[0], 1))
    if has.sum() >= 1:
        sub = expression_features(X1[has], n_comps=n_comps, random_state=random_state)
        features = np.zeros((X1.shape[0], sub.shape[1]))
        features[has] = sub
    return has, features


def _expand(W_sub: sparse.csr_matrix, has: np.ndarray) -> sparse.csr_matrix:
    """Weights among the spots with counts, placed in the full matrix (others get only
    themselves, i.e. the pooled profile after :func:`smooth`)."""
    n = has.size
    pos = np.flatnonzero(has)
    coo = W_sub.tocoo()
    return sparse.csr_matrix((coo.data, (pos[coo.row], pos[coo.col])), shape=(n, n))


def knn(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    n_neighbors: int = 15,
    n_comps: int = 30,
    average: Average = "counts",
    prior: float = PRIOR,
):
    """Average over the ``n_neighbors`` nearest spots (self included) by cosine distance of
    the principal components of log-normalized counts. Spots without counts get the pooled
    profile."""
    k = check_k(n_neighbors)
    has, features = _expression_space(X1, n_comps, random_state)
    if not has.any():
        return gene_mean(X1)
    Z = _unit_rows(features[has])  # Euclidean on unit vectors ranks like cosine
    _, idx = _knn_indices(Z, k)
    W = _expand(_self_included(idx, np.ones(idx.shape), Z.shape[0]), has)
    return smooth(W, X1, average=average, prior=prior)


# ----------------------------------------------------------------------------- diffusion


def _magic_operator(features: np.ndarray, k: int, ka: int) -> sparse.csr_matrix:
    """Symmetrized adaptive Gaussian kernel on the kNN graph (self included):
    ``K_ij = exp(-(d_ij / sigma_i)^2)`` with ``sigma_i`` the distance to the ``ka``-th
    neighbour, ``K <- (K + K^T) / 2``."""
    n = features.shape[0]
    dist, idx = _knn_indices(features, k + 1)
    ka = min(ka, dist.shape[1] - 1)
    sigma = dist[:, ka] if ka >= 1 else np.ones(n)
    positive = sigma[sigma > 0]
    sigma = np.where(sigma > 0, sigma, positive.min() if positive.size else 1.0)
    K = _self_included(idx, np.exp(-((dist / sigma[:, None]) ** 2)), n)
    return sparse.csr_matrix((K + K.T) / 2.0)


def diffusion(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    n_neighbors: int = 15,
    ka: int = 5,
    t: int = 2,
    n_comps: int = 30,
    average: Average = "counts",
    prior: float = 5.0,
):
    """MAGIC-like diffusion (van Dijk et al. 2018) of proportions: a Markov matrix from an
    adaptive Gaussian kernel on the PCA of log-normalized counts (``n_neighbors`` nearest
    spots, bandwidth the distance to the ``ka``-th), applied ``t`` times."""
    k = check_k(n_neighbors)
    t = check_k(t, name="t")
    ka = check_k(ka, name="ka")
    has, features = _expression_space(X1, n_comps, random_state)
    if not has.any():
        return gene_mean(X1)
    W = _expand(_magic_operator(features[has], k, ka), has)
    return smooth(W, X1, average=average, steps=t, prior=prior)


# ----------------------------------------------------------------------------- spatial


def spatial_knn(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    n_neighbors: int = 7,
    average: Average = "counts",
    prior: float = PRIOR,
    similarity: Metric | None = None,
    similarity_scale: float = 1.0,
    similarity_threshold: float = 0.0,
    similarity_features: np.ndarray | None = None,
    n_comps: int = 30,
):
    """Average over the ``n_neighbors`` spatially nearest spots, the spot itself included.
    ``similarity`` (``"gaussian"`` or ``"correlation"``)
    down-weights neighbours whose expression differs (see
    :func:`~cellweave.impute.similarity.similarity_weights`)."""
    coords = require_coords(coords, n_obs=X1.shape[0], method="spatial_knn", fix=NON_SPATIAL)
    k = check_k(n_neighbors)
    _, idx = _knn_indices(coords, k)
    W = _self_included(idx, np.ones(idx.shape), X1.shape[0])
    gate = SimilarityGate(
        similarity, similarity_scale, similarity_threshold, n_comps, similarity_features
    )
    return smooth(gate.apply(W, X1, random_state=random_state), X1, average=average, prior=prior)


def rings(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    weights: Sequence[float] = (1.0, 0.5),
    self_weight: float = 1.0,
    graph: str = "auto",
    n_neighbors: int = 6,
    average: Average = "counts",
    prior: float = PRIOR,
    similarity: Metric | None = None,
    similarity_scale: float = 1.0,
    similarity_threshold: float = 0.0,
    similarity_features: np.ndarray | None = None,
    n_comps: int = 30,
):
    """Weighted mean of the spot (``self_weight``) and its neighbour rings (ring ``k``
    weighs ``weights[k-1]``), rings from :func:`cellweave.graph.neighbor_rings` (lattice
    rings on ST/Visium grids, hop rings of a ``n_neighbors``-NN graph elsewhere; ``graph``
    is its ``method``). ``similarity`` as in :func:`spatial_knn`."""
    coords = require_coords(coords, n_obs=X1.shape[0], method="rings", fix=NON_SPATIAL)
    if not (np.isfinite(self_weight) and self_weight >= 0):
        raise InputError(f"self_weight={self_weight!r} must be non-negative; pass e.g. 1.0")
    order = ring_orders(
        coords, max_order=len(weights), n_neighbors=check_k(n_neighbors), method=graph
    )
    W = _graph.ring_weights(order, weights=weights, normalize=None)
    W = sparse.csr_matrix(W + self_weight * sparse.eye(X1.shape[0], format="csr"))
    gate = SimilarityGate(
        similarity, similarity_scale, similarity_threshold, n_comps, similarity_features
    )
    return smooth(gate.apply(W, X1, random_state=random_state), X1, average=average, prior=prior)
