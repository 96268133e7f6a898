"""Scores for denoising/imputation by molecular cross-validation (Batson, Royer & Webber 2019).

A count matrix ``X`` is split into two independent halves of its molecules, ``X1`` (what a
method sees) and ``X2`` (held out). A method returns expected proportions ``P`` (rows sum to
1, strictly positive); it is scored on *all* entries of ``X2``, zeros included, so a method
gains nothing from knowing which entries were non-zero.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._utils import RandomState, check_random_state
from ..errors import InputError

__all__ = [
    "gene_pearson_median",
    "log_mse",
    "molecular_split",
    "poisson_deviance",
    "score_proportions",
]


def molecular_split(
    X, *, p: float = 0.5, random_state: RandomState = 0, chunk_entries: int = 2**24
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Split counts into ``X1 ~ Binomial(X, p)`` and ``X2 = X - X1`` (sparse CSR, float64).

    With ``random_state=seed`` this is exactly ``rng = numpy.random.default_rng(seed);
    X1 = rng.binomial(X, p)`` on the dense matrix (drawn in row chunks of the same stream,
    so memory stays bounded).
    """
    rng = check_random_state(random_state)
    X = sparse.csr_matrix(X, dtype=np.float64)
    if X.nnz and (X.data.min() < 0 or not np.array_equal(X.data, np.rint(X.data))):
        raise InputError(
            "molecular split needs raw counts (non-negative integers); pass the counts layer"
        )
    rows_per_chunk = max(1, chunk_entries // max(X.shape[1], 1))
    parts = []
    for start in range(0, X.shape[0], rows_per_chunk):
        block = X[start : start + rows_per_chunk].toarray().astype(np.int64)
        parts.append(sparse.csr_matrix(rng.binomial(block, p).astype(np.float64)))
    X1 = sparse.vstack(parts, format="csr") if parts else sparse.csr_matrix(X.shape)
    X2 = (X - X1).tocsr()
    X2.eliminate_zeros()
    return X1, X2


def _dense(X) -> np.ndarray:
    return X.toarray() if sparse.issparse(X) else np.asarray(X, dtype=np.float64)


def _check_proportions(P: np.ndarray, X2) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.shape != X2.shape:
        raise InputError(f"predictions have shape {P.shape} but held-out counts {X2.shape}")
    if not np.all(np.isfinite(P)) or np.any(P <= 0):
        raise InputError("predicted proportions must be finite and strictly positive")
    return P


def poisson_deviance(P, X2, *, per_entry: bool = True) -> float:
    """Mean Poisson deviance over all entries with ``mu_ij = s2_i * P_ij``.

    ``s2`` are the row sums of ``X2``. Deviance per entry is
    ``2 * (x log(x / mu) - (x - mu))`` with ``0 log 0 = 0``; lower is better.
    """
    X2s = sparse.csr_matrix(X2, dtype=np.float64)
    P = _check_proportions(P, X2s)
    s2 = np.asarray(X2s.sum(axis=1)).ravel()
    mu_total = (s2[:, None] * P).sum()
    # sum over non-zeros of x log(x / mu); the -(x - mu) terms sum to (total mu - total x)
    rows = np.repeat(np.arange(X2s.shape[0]), np.diff(X2s.indptr))
    x = X2s.data
    mu_nz = s2[rows] * P[rows, X2s.indices]
    total = 2.0 * (np.sum(x * np.log(x / mu_nz)) - x.sum() + mu_total)
    n_entries = X2s.shape[0] * X2s.shape[1]
    return float(total / n_entries) if per_entry else float(total)


def log_mse(P, X2, *, scale: float = 1e4) -> float:
    """MSE between ``log1p(scale * P)`` and ``log1p(scale * X2 / s2)`` over all entries
    (rows of ``X2`` with no counts are left out)."""
    X2d = _dense(X2)
    P = _check_proportions(P, X2d)
    s2 = X2d.sum(axis=1, keepdims=True)
    keep = s2.ravel() > 0
    target = np.log1p(scale * X2d[keep] / s2[keep])
    return float(np.mean((np.log1p(scale * P[keep]) - target) ** 2))


def gene_pearson_median(P, X2) -> float:
    """Median over genes of Pearson r between ``P[:, j]`` and ``X2[:, j] / s2`` (genes
    constant in either are left out)."""
    X2d = _dense(X2)
    P = _check_proportions(P, X2d)
    s2 = X2d.sum(axis=1, keepdims=True)
    keep = s2.ravel() > 0
    a = P[keep] - P[keep].mean(axis=0)
    b = X2d[keep] / s2[keep]
    b = b - b.mean(axis=0)
    denom = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    # a column constant up to rounding (e.g. the gene-mean predictor) has no correlation
    scale = np.sqrt((P[keep] ** 2).sum(axis=0) * ((X2d[keep] / s2[keep]) ** 2).sum(axis=0))
    ok = denom > 1e-10 * scale
    if not ok.any():
        return float("nan")
    return float(np.median((a[:, ok] * b[:, ok]).sum(axis=0) / denom[ok]))


def score_proportions(P, X2) -> dict[str, float]:
    """The three protocol scores: ``deviance`` (primary), ``log_mse``,
    ``gene_pearson_median``."""
    return {
        "deviance": poisson_deviance(P, X2),
        "log_mse": log_mse(P, X2),
        "gene_pearson_median": gene_pearson_median(P, X2),
    }
