"""Label predictions that use the unlabelled cells: the classifier's probabilities spread
over the latent's nearest-neighbour graph (label spreading, Zhou et al. 2004), the labelled
cells clamped to their labels.

``F <- alpha * S F + (1 - alpha) * Y0`` on the symmetric, degree-normalized kNN graph ``S``
of the latent, ``Y0`` the one-hot labels of the labelled cells and the classifier's
``q(c | z)`` of the others; ``F`` renormalized per row gives the probabilities.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..graph import nearest_neighbors

__all__ = ["ALPHA", "N_ITER", "spread_labels"]

#: Weight of the neighbours against the start, and the iterations, of label spreading.
ALPHA, N_ITER = 0.95, 50


def _graph(latent: np.ndarray, k: int) -> sparse.csr_matrix:
    """``D^-1/2 W D^-1/2`` of the symmetrized kNN graph (Gaussian weights, each cell's
    bandwidth its distance to its ``k``-th neighbour)."""
    n = latent.shape[0]
    k = max(1, min(int(k), n - 1))
    dist, idx = nearest_neighbors(latent, k, include_self=False)
    sigma = np.maximum(dist[:, -1:], 1e-8)
    w = np.exp(-((dist / sigma) ** 2))
    W = sparse.csr_matrix((w.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    W = W.maximum(W.T)
    d = np.asarray(W.sum(1)).ravel()
    inv = sparse.diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    return sparse.csr_matrix(inv @ W @ inv)


def spread_labels(
    latent: np.ndarray, probabilities: np.ndarray, codes: np.ndarray, *, k: int = 15
) -> np.ndarray:
    """Probabilities ``(n, n_classes)`` after label spreading (see the module docstring):
    ``latent`` ``(n, d)`` posterior means, ``probabilities`` the classifier's ``(n,
    n_classes)``, ``codes`` ``(n,)`` the label code of labelled cells (``-1`` elsewhere),
    ``k`` neighbours per cell; :data:`ALPHA` and :data:`N_ITER` set the spreading."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if latent.shape[0] < 3:
        return probs.astype(np.float32)
    start = probs.copy()
    known = np.asarray(codes) >= 0
    start[known] = 0.0
    start[known, np.asarray(codes)[known]] = 1.0
    S = _graph(np.asarray(latent, dtype=np.float32), k)
    F = start.copy()
    for _ in range(N_ITER):
        F = ALPHA * (S @ F) + (1.0 - ALPHA) * start
        F[known] = start[known]  # the labelled cells keep their labels
    F = np.maximum(F, 0.0)
    F /= np.maximum(F.sum(1, keepdims=True), 1e-12)
    return F.astype(np.float32)
