"""Local inverse Simpson's index (Korsunsky et al. 2019) as scib-metrics computes it."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from .inputs import embedding_array, label_codes, need_groups
from .neighbours import knn_lists

__all__ = [
    "clisi",
    "ilisi",
    "lisi",
    "lisi_from_knn",
    "neighbor_probabilities",
    "scaled_clisi",
    "scaled_ilisi",
]


def neighbor_probabilities(
    dist: np.ndarray, perplexity: float, tol: float = 1e-5, max_iter: int = 50
) -> np.ndarray:
    """Row-wise Gaussian kernel ``exp(-beta d)`` whose entropy matches ``log(perplexity)``.

    The bisection on ``beta`` is the one of Harmony's LISI / scib-metrics, run on all rows
    at once. Distances are shifted by each row's minimum, which leaves the normalised
    probabilities and the entropy unchanged but avoids underflow.
    """
    n = dist.shape[0]
    d = dist - dist.min(axis=1, keepdims=True)
    target = np.log(perplexity)
    beta = np.ones(n)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)

    def entropy(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.exp(-d * b[:, None])
        total = w.sum(axis=1)  # >= 1: the nearest neighbour has weight exp(0)
        h = np.log(total) + b * (d * w).sum(axis=1) / total
        return h, w / total[:, None]

    h, p = entropy(beta)
    for _ in range(max_iter):
        diff = h - target
        active = np.abs(diff) > tol
        if not active.any():
            break
        up = active & (diff > 0)
        down = active & ~(diff > 0)
        lo[up] = beta[up]
        beta[up] = np.where(np.isinf(hi[up]), beta[up] * 2.0, (beta[up] + hi[up]) / 2.0)
        hi[down] = beta[down]
        beta[down] = np.where(np.isinf(lo[down]), beta[down] / 2.0, (beta[down] + lo[down]) / 2.0)
        h, p = entropy(beta)
    return p


def lisi_from_knn(
    dist: np.ndarray, idx: np.ndarray, codes: np.ndarray, n_groups: int, perplexity: float | None
) -> np.ndarray:
    """Per-cell LISI from a kNN result (self excluded) and integer group codes."""
    n, n_nb = idx.shape
    if perplexity is None:
        perplexity = max(1.0, float(n_nb // 3))
    p = neighbor_probabilities(dist, perplexity)
    rows = np.repeat(np.arange(n), n_nb)
    per_label = sparse.csr_matrix((p.ravel(), (rows, codes[idx].ravel())), shape=(n, n_groups))
    simpson = np.asarray(per_label.multiply(per_label).sum(axis=1)).ravel()
    return 1.0 / simpson


def lisi(
    embedding: Any, labels: Any, *, n_neighbors: int = 90, perplexity: float | None = None
) -> np.ndarray:
    """Local inverse Simpson's index of ``labels`` per cell (Korsunsky et al. 2019).

    For each cell, neighbour weights ``exp(-beta d)`` over its ``n_neighbors`` nearest
    neighbours are calibrated so that their perplexity is ``perplexity`` (default
    ``n_neighbors // 3``, as scib-metrics; scib uses 90 neighbours and perplexity 30); LISI
    is ``1 / sum_l (sum of weights of neighbours with label l)^2``, the effective number of
    labels around the cell, in ``[1, n_labels]``.
    """
    x = embedding_array(embedding)
    codes, k = label_codes(labels, "labels", x.shape[0])
    dist, idx = knn_lists(x, n_neighbors)
    return lisi_from_knn(dist, idx, codes, k, perplexity)


def ilisi(
    embedding: Any,
    batches: Any,
    *,
    n_neighbors: int = 90,
    perplexity: float | None = None,
    scale: bool = True,
) -> float:
    """Integration LISI: median batch LISI, scaled to [0, 1] (1 = batches fully mixed)."""
    values, k = _group_lisi(embedding, batches, "batches", "iLISI", n_neighbors, perplexity)
    return scaled_ilisi(values, k, scale)


def clisi(
    embedding: Any,
    labels: Any,
    *,
    n_neighbors: int = 90,
    perplexity: float | None = None,
    scale: bool = True,
) -> float:
    """Cell-type LISI: median label LISI, scaled to [0, 1] (1 = neighbourhoods are pure)."""
    values, k = _group_lisi(embedding, labels, "labels", "cLISI", n_neighbors, perplexity)
    return scaled_clisi(values, k, scale)


def _group_lisi(
    embedding: Any,
    groups: Any,
    name: str,
    what: str,
    n_neighbors: int,
    perplexity: float | None,
) -> tuple[np.ndarray, int]:
    """Per-cell LISI of ``groups`` (at least 2 of them) and the number of groups."""
    x = embedding_array(embedding)
    codes, k = label_codes(groups, name, x.shape[0])
    need_groups(k, x.shape[0], name, what)
    dist, idx = knn_lists(x, n_neighbors)
    return lisi_from_knn(dist, idx, codes, k, perplexity), k


def scaled_ilisi(values: np.ndarray, k: int, scale: bool) -> float:
    med = float(np.median(values))
    return (med - 1.0) / (k - 1.0) if scale else med


def scaled_clisi(values: np.ndarray, k: int, scale: bool) -> float:
    med = float(np.median(values))
    return (k - med) / (k - 1.0) if scale else med
