"""Expression features of spots and the similarity of neighbouring spots.

Spatial smoothing blurs across tissue boundaries when it averages a spot with neighbours of
another tissue. :func:`similarity_weights` scores every edge of a spatial graph by how alike
its two spots look, so that a smoother (or a spatial loss) can down-weight the edges that
cross a boundary: multiply the graph's weights by these scores, e.g.
``W = ring_weights(order, normalize=None).multiply(similarity_weights(order, features))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse

from ..errors import InputError
from ..pp import log_normalize, pca

__all__ = ["SimilarityGate", "expression_features", "gate_by_similarity", "similarity_weights"]

Metric = Literal["gaussian", "correlation"]


def expression_features(X, *, n_comps: int = 30, random_state: int = 0) -> np.ndarray:
    """Principal components of log-normalized counts (``target_sum=1e4``), ``(n, d)`` float64.

    With fewer than 3 spots (or a single gene) there is nothing to decompose: the
    log-normalized matrix itself is returned. Spots with no counts get a row of the
    log-normalized zero vector projected like the others (their features carry no
    information; callers should treat them separately).
    """
    L = log_normalize(X)
    n, n_genes = L.shape
    if n < 3 or n_genes < 2:
        return np.asarray(L.toarray() if sparse.issparse(L) else L, dtype=np.float64)
    return np.asarray(pca(L, n_comps=n_comps, random_state=random_state), dtype=np.float64)


def _edge_similarity(
    a: np.ndarray, b: np.ndarray, *, metric: Metric, scale: float, threshold: float
) -> np.ndarray:
    if metric == "gaussian":
        # bandwidth: the typical (median) distance between neighbours, rounding noise counted
        # as 0; when the typical neighbour is identical (flat regions), any real difference
        # is atypical and its edge is cut
        tol = 1e-6 * max(float(np.sqrt(np.mean(a**2 + b**2))), 1e-12)
        dist = np.linalg.norm(a - b, axis=1)
        dist = np.where(dist > tol, dist, 0.0)
        bandwidth = scale * float(np.median(dist)) if dist.size else 0.0
        if bandwidth <= tol:
            return (dist == 0).astype(np.float64)
        return np.exp(-((dist / bandwidth) ** 2))
    ac = a - a.mean(axis=1, keepdims=True)
    bc = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((ac**2).sum(axis=1) * (bc**2).sum(axis=1))
    r = np.divide((ac * bc).sum(axis=1), denom, out=np.ones(a.shape[0]), where=denom > 0)
    return (r >= threshold).astype(np.float64)


def similarity_weights(
    graph,
    features,
    *,
    metric: Metric = "gaussian",
    scale: float = 1.0,
    threshold: float = 0.0,
    valid: np.ndarray | None = None,
    relative: bool = False,
) -> sparse.csr_matrix:
    """Expression similarity of the two spots of every edge of a graph, in ``[0, 1]``.

    Parameters
    ----------
    graph
        Square sparse matrix (ring orders from ``graph.neighbor_rings``, a weighted adjacency
        from ``graph.ring_weights``, a kNN connectivity, ...); only its sparsity pattern is
        used, its values are ignored.
    features
        ``(n, d)`` features of the spots, e.g. :func:`expression_features`.
    metric
        ``"gaussian"``: ``exp(-(d_ij / h)^2)`` with ``d_ij`` the Euclidean distance of the
        features and ``h = scale *`` the median ``d_ij`` over the graph's edges (so about
        a third of the weight is kept on a typical edge and much less on a boundary edge);
        ``"correlation"``: 1 where the Pearson correlation of the two feature vectors is at
        least ``threshold``, else 0 (with centred PCA features and ``threshold=0``: keep the
        neighbours that deviate from the average profile in the same direction).
    scale
        Bandwidth factor of ``"gaussian"`` (larger: closer to plain smoothing).
    threshold
        Correlation threshold of ``"correlation"``.
    valid
        Boolean mask of spots whose features mean something; edges touching an invalid spot
        (e.g. one without counts) get similarity 1, i.e. plain smoothing.
    relative
        Divide every row by its largest off-diagonal similarity, so that each spot keeps its
        most similar neighbour at full weight (``exp(-(d_ij^2 - min_k d_ik^2) / h^2)`` for
        ``"gaussian"``). For features that can differ for reasons unrelated to expression
        (histology at the tissue edge, folds, bubbles): a spot unlike all its neighbours
        is still smoothed with the most alike instead of being cut off.

    Returns
    -------
    CSR float64 with the sparsity pattern of ``graph`` (diagonal entries, if any, are 1).
    Multiply a weighted adjacency by it element-wise: ``W.multiply(S)``.
    """
    pattern = sparse.csr_matrix(graph, copy=True)
    pattern.eliminate_zeros()
    coo = pattern.tocoo()
    if coo.shape[0] != coo.shape[1]:
        raise InputError(f"graph has shape {coo.shape}; pass a square (n_obs, n_obs) matrix")
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] != coo.shape[0]:
        raise InputError(
            f"features have shape {features.shape} but the graph has {coo.shape[0]} spots; "
            "pass an (n_obs, n_features) array"
        )
    if metric not in ("gaussian", "correlation"):
        raise InputError(f"metric={metric!r} is unknown; choose 'gaussian' or 'correlation'")
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"scale={scale!r} must be a positive number; pass e.g. scale=1.0")
    rows, cols = coo.row, coo.col
    off = rows != cols
    sim = np.ones(rows.size)
    sim[off] = _edge_similarity(
        features[rows[off]],
        features[cols[off]],
        metric=metric,
        scale=scale,
        threshold=threshold,
    )
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        sim[~(valid[rows] & valid[cols])] = 1.0
    if relative and off.any():
        best = np.zeros(coo.shape[0])
        np.maximum.at(best, rows[off], sim[off])
        scale_row = np.divide(1.0, best, out=np.ones_like(best), where=best > 0)
        sim[off] = np.minimum(sim[off] * scale_row[rows[off]], 1.0)
    out = sparse.csr_matrix((sim, (rows, cols)), shape=coo.shape)
    out.sort_indices()
    return out


def gate_by_similarity(
    W,
    X,
    *,
    metric: Metric | None,
    scale: float = 1.0,
    threshold: float = 0.0,
    n_comps: int = 30,
    random_state: int = 0,
    features: np.ndarray | None = None,
    relative: bool | None = None,
) -> sparse.csr_matrix:
    """``W`` with every edge multiplied by the similarity of its two spots.

    The similarity is computed from ``features`` when given (one row per spot, e.g.
    histology features from :func:`cellweave.image.spot_image_features`), else from the
    expression of the counts ``X`` (:func:`expression_features`; spots without counts are
    not gated). ``metric=None`` returns ``W`` unchanged. ``relative`` (see
    :func:`similarity_weights`) defaults to ``True`` for given features and ``False`` for
    expression: measured on the simulator with a rendered histology image, absolute gating
    cut the spots at the tissue edge off from every neighbour.
    """
    W = sparse.csr_matrix(W)
    if metric is None or W.shape[0] < 2:
        return W
    if features is None:
        features = expression_features(X, n_comps=n_comps, random_state=random_state)
        valid = np.asarray(sparse.csr_matrix(X).sum(axis=1)).ravel() > 0
    else:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] != W.shape[0]:
            raise InputError(
                f"similarity features have shape {features.shape} for {W.shape[0]} spots; "
                "pass one row of features per spot"
            )
        valid = None
    if relative is None:
        relative = valid is None
    S = similarity_weights(
        W,
        features,
        metric=metric,
        scale=scale,
        threshold=threshold,
        valid=valid,
        relative=relative,
    )
    return sparse.csr_matrix(W.multiply(S))


@dataclass(frozen=True)
class SimilarityGate:
    """The similarity gating of a smoother's graph, as one value (see :func:`gate_by_similarity`
    for the meaning of each field; ``metric=None``: no gating)."""

    metric: Metric | None = None
    scale: float = 1.0
    threshold: float = 0.0
    n_comps: int = 30
    features: np.ndarray | None = None

    def apply(self, W, X, *, random_state: int = 0) -> sparse.csr_matrix:
        """``W`` gated by the similarity of the spots of ``X`` (:func:`gate_by_similarity`)."""
        return gate_by_similarity(
            W,
            X,
            metric=self.metric,
            scale=self.scale,
            threshold=self.threshold,
            n_comps=self.n_comps,
            random_state=random_state,
            features=self.features,
        )
