"""Each spot's own counts on top of a model: the Gamma-Poisson posterior mean.

A model (or a blend of models) gives prior proportions ``P``; the spot's counts ``x_i`` (library
``s_i``) are Poisson with rate ``s_i p_ij``, and ``p_ij`` is Gamma with mean ``P_ij`` and a
per-gene shape ``a_j`` (how far the truth strays from the model for that gene). The posterior
mean is

    ``p_ij = P_ij (x_ij + a_j) / (s_i P_ij + a_j)``

(rows renormalized): genes whose counts vary beyond the model keep part of each spot's own
signal, the others follow the model. ``1 / a_j`` is the method-of-moments estimate of the
extra-Poisson variance, ``sum_i ((x_ij - mu_ij)^2 - x_ij) / sum_i mu_ij^2`` with
``mu_ij = s_i P_ij``, floored at ``MIN_INVERSE_SHAPE`` (then the model stands).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["MIN_INVERSE_SHAPE", "extra_poisson_variance", "posterior_mean"]

#: Smallest ``1 / a_j``: genes without measurable extra-Poisson variance follow the model.
MIN_INVERSE_SHAPE = 1e-6


def extra_poisson_variance(X: sparse.csr_matrix, P: np.ndarray) -> np.ndarray:
    """``1 / a_j`` per gene (see the module docstring), at least ``MIN_INVERSE_SHAPE``."""
    X = sparse.csr_matrix(X, dtype=np.float64)
    s = np.asarray(X.sum(axis=1)).ravel()
    mu2 = (s**2) @ (P**2)  # sum_i mu_ij^2
    cross = np.asarray(X.multiply(P).multiply(s[:, None]).sum(axis=0)).ravel()  # sum x mu
    x2 = np.asarray(X.multiply(X).sum(axis=0)).ravel()
    x1 = np.asarray(X.sum(axis=0)).ravel()
    excess = x2 - 2.0 * cross + mu2 - x1
    inverse = np.divide(excess, mu2, out=np.zeros_like(mu2), where=mu2 > 0)
    return np.maximum(inverse, MIN_INVERSE_SHAPE)


def posterior_mean(X, P: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Posterior mean proportions of every entry given its counts and the prior ``P``
    (spots x genes, rows summing to 1); written into ``out`` when given (it may be ``P``)."""
    X = sparse.csr_matrix(X, dtype=np.float64)
    a = 1.0 / extra_poisson_variance(X, P)
    s = np.asarray(X.sum(axis=1)).ravel()
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    observed = P[rows, X.indices] * X.data  # P x at the non-zero counts, before P is reused
    denominator = np.multiply(P, s[:, None])
    denominator += a
    Q = np.multiply(P, a, out=out)
    Q[rows, X.indices] += observed
    Q /= denominator
    Q /= Q.sum(axis=1, keepdims=True)
    return Q
