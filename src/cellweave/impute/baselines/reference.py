"""References: ``raw`` (each spot's own proportions), ``gene_mean`` (one pooled profile for
all) and ``shrinkage`` (each spot shrunk towards the gene mean, the strength chosen from
``X1`` by an inner molecular split)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from ...errors import InputError
from ...metrics.denoising import molecular_split
from ..proportions import to_proportions
from .smoothing import RAW_PSEUDOCOUNT, library, pooled_profile, smooth

__all__ = ["gene_mean", "raw", "shrinkage", "shrinkage_prior"]


def raw(X1, *, coords=None, random_state: int = 0, pseudocount: float = RAW_PSEUDOCOUNT):
    """Each spot's own proportions, ``(X1 + c) / (s + c G)`` with ``c = 1e-3`` molecules per
    entry; spots without counts get the pooled profile."""
    if not (np.isfinite(pseudocount) and pseudocount > 0):
        raise InputError(f"pseudocount={pseudocount!r} must be positive; pass e.g. 1e-3")
    s = library(X1)
    M = X1.toarray() + pseudocount
    M[s <= 0] = pooled_profile(X1, pseudocount=pseudocount)
    return to_proportions(M)


def gene_mean(X1, *, coords=None, random_state: int = 0, pseudocount: float = RAW_PSEUDOCOUNT):
    """The pooled profile (:func:`pooled_profile`) for every spot."""
    profile = pooled_profile(X1, pseudocount=pseudocount)
    return to_proportions(np.broadcast_to(profile, X1.shape))


def shrinkage_prior(X1, *, grid: Sequence[float] | None = None, random_state: int = 0) -> float:
    """Prior strength (pseudo-molecules of the pooled profile) chosen from ``X1`` alone by an
    inner molecular split: fit ``(x + a g) / (s + a)`` on ``Binomial(X1, 0.5)``, score the
    Poisson deviance on the rest, keep the best ``a`` of ``grid`` (``inf``: the gene mean).

    In a Dirichlet-multinomial model the best ``a`` does not depend on the depth, so the
    value found on the half transfers to ``X1``.
    """
    grid = _SHRINK_GRID if grid is None else tuple(float(a) for a in grid)
    if not grid or any(not a > 0 for a in grid):
        raise InputError(f"grid={grid!r} must hold positive prior strengths; pass e.g. (10, 100)")
    A, B = molecular_split(X1, random_state=random_state)
    if B.sum() <= 0:
        return float(grid[-1])
    scores = _shrinkage_deviances(A, B, grid)
    return float(grid[int(np.argmin(scores))])


def _shrinkage_deviances(A: sparse.csr_matrix, B: sparse.csr_matrix, grid) -> np.ndarray:
    """Total Poisson deviance on ``B`` of ``(A_i + a g) / (s_i + a)`` for every ``a`` in
    ``grid``, in O(nnz): with rows summing to 1 the ``mu - x`` terms cancel, so only the
    non-zeros of ``B`` count."""
    B = sparse.csr_matrix(B)
    B.eliminate_zeros()
    B.sort_indices()
    mask = B.copy()
    mask.data[:] = 1.0
    # A on the pattern of B, aligned with B.data (1 + A never cancels to an implicit zero)
    aligned = sparse.csr_matrix(mask + A.multiply(mask))
    aligned.sort_indices()
    a_vals = aligned.data - 1.0
    rows = np.repeat(np.arange(B.shape[0]), np.diff(B.indptr))
    g = pooled_profile(A)[B.indices]
    s = library(A)[rows]
    b_tot = library(B)[rows]
    x = B.data
    out = []
    for a in grid:
        if np.isinf(a):
            p = g
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                p = np.where(s + a > 0, (a_vals + a * g) / (s + a), g)
        out.append(2.0 * np.sum(x * np.log(x / (b_tot * np.maximum(p, 1e-300)))))
    return np.asarray(out)


_SHRINK_GRID = (*np.geomspace(3.0, 3000.0, 13).round(1).tolist(), np.inf)


def shrinkage(X1, *, coords=None, random_state: int = 0, prior: float | None = None):
    """Empirical-Bayes blend of ``raw`` and ``gene_mean``: ``P_i = (x_i + a g) / (s_i + a)``
    with ``a`` from :func:`shrinkage_prior` (or ``prior``); no neighbours at all."""
    a = shrinkage_prior(X1, random_state=random_state) if prior is None else float(prior)
    if np.isinf(a):
        return gene_mean(X1)
    return smooth(sparse.eye(X1.shape[0], format="csr"), X1, prior=a)
