"""The recipe the smoothers share: a weight matrix averages proportions or pools counts,
shrunk towards the pooled profile by a Dirichlet prior (see :mod:`cellweave.impute.baselines`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import sparse

from ...errors import InputError
from ..proportions import to_proportions

__all__ = [
    "RAW_PSEUDOCOUNT",
    "Average",
    "check_k",
    "library",
    "pooled_profile",
    "product_proportions",
    "shrunk",
    "smooth",
]

#: Pseudocount (molecules per entry) of the ``raw`` reference: tiny, so that ``raw`` is the
#: observed proportions themselves (it reproduces the issue's reference numbers).
RAW_PSEUDOCOUNT = 1e-3

Average = Literal["proportions", "counts"]

# Defaults measured with the molecular cross-validation protocol on the shared data
# (breast slices 1-4 and MERFISH, mean deviance over seeds; see the method docstrings).
PRIOR = 30.0
#: How to do without coordinates (the end of the missing-coordinates message).
NON_SPATIAL = "use a non-spatial method such as 'knn', 'diffusion', 'nmf' or 'gene_mean'"


def library(X1: sparse.csr_matrix) -> np.ndarray:
    """Library size (total counts) of every spot."""
    return np.asarray(X1.sum(axis=1)).ravel()


def pooled_profile(X1, *, pseudocount: float = RAW_PSEUDOCOUNT) -> np.ndarray:
    """Pooled gene proportions of all spots, ``(G,)``, strictly positive when
    ``pseudocount > 0``.

    ``pseudocount`` molecules are added per entry (``n_spots * pseudocount`` per gene), so
    that a gene never observed gets a small positive proportion; with one spot this is the
    ``raw`` prediction of that spot.
    """
    totals = np.asarray(X1.sum(axis=0)).ravel() + pseudocount * X1.shape[0]
    if totals.sum() <= 0:
        return np.full(X1.shape[1], 1.0 / X1.shape[1])
    return totals / totals.sum()


def shrunk(M: np.ndarray, depth: np.ndarray, *, prior: float, profile: np.ndarray) -> np.ndarray:
    """``P_i = (M_i + prior * g) / (depth_i + prior)``; rows with nothing become ``g``."""
    if prior < 0 or not np.isfinite(prior):
        raise InputError(f"prior={prior!r} must be a non-negative number; pass e.g. prior=30")
    M = np.asarray(M, dtype=np.float64)
    empty = depth <= 0
    if prior > 0:
        M = M + prior * profile
    M[empty] = profile
    return to_proportions(M)


def product_proportions(
    W: np.ndarray, H: np.ndarray, *, prior: float, profile: np.ndarray
) -> np.ndarray:
    """Proportions of the factorization ``W H`` (counts per spot) shrunk by ``prior``."""
    M = W @ H
    return shrunk(M, M.sum(axis=1), prior=prior, profile=profile)


def smooth(
    W,
    X1,
    *,
    average: Average = "counts",
    steps: int = 1,
    prior: float = PRIOR,
    profile: np.ndarray | None = None,
) -> np.ndarray:
    """Proportions averaged over the rows of a non-negative weight matrix, ``steps`` times.

    Parameters
    ----------
    W
        ``(n, n)`` sparse non-negative weights, self-loops included (rows need not be
        normalized: each application is divided by its total weight).
    X1
        Counts, ``(n, G)``.
    average
        ``"proportions"``: weighted mean of the spots' proportions, over spots with counts;
        ``"counts"``: weighted sum of counts (proportions weighted by library size).
    steps
        Number of applications of the row-normalized ``W`` (diffusion time).
    prior
        Pseudo-molecules of ``profile`` added to every spot (see the module docstring).
    profile
        Shrinkage target; default the pooled profile of ``X1``.

    Returns
    -------
    ``P``, ``(n, G)`` proportions.
    """
    W = sparse.csr_matrix(W, dtype=np.float64)
    if average not in ("proportions", "counts"):
        raise InputError(f"average={average!r} is unknown; choose 'proportions' or 'counts'")
    profile = pooled_profile(X1) if profile is None else profile
    s = library(X1)
    has = (s > 0).astype(np.float64)
    if average == "proportions":
        F = X1.multiply(np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)[:, None]).toarray()
    else:
        F = X1.toarray()
    degree = np.asarray(W.sum(axis=1)).ravel()
    op = sparse.diags(np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)) @ W
    op = sparse.csr_matrix(op)
    mass, depth = has, s
    for _ in range(steps):
        F, mass, depth = op @ F, op @ mass, op @ depth
    # mean over the spots with counts that the walk reached, on their mean library scale
    seen = mass > 0
    inv_mass = np.divide(1.0, mass, out=np.zeros_like(mass), where=seen)
    if average == "proportions":
        mean_depth = depth * inv_mass
        M = F * (inv_mass * mean_depth)[:, None]
    else:
        M, mean_depth = F, np.asarray(F.sum(axis=1)).ravel()
    return shrunk(M, np.where(seen, mean_depth, 0.0), prior=prior, profile=profile)


def check_k(k, *, name: str = "n_neighbors") -> int:
    """``k`` as a positive int, or a one-line error (for direct calls of the functions)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"{name}={k!r} must be a positive integer; pass e.g. {name}=15")
    return int(k)
