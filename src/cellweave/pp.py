"""Preprocessing shared by the capabilities; thin over scanpy where scanpy has it."""

from __future__ import annotations

import numbers

import numpy as np
from scipy import sparse

from .errors import InvalidOptionError

__all__ = ["log_normalize", "pca"]


def log_normalize(X, *, target_sum: float = 1e4):
    """Scale each row to ``target_sum`` total and take ``log1p`` (``sc.pp.normalize_total`` +
    ``sc.pp.log1p`` on a matrix). Rows summing to zero stay zero. Returns float32, sparse in,
    sparse out.

    Raises
    ------
    InvalidOptionError
        ``target_sum`` is not a finite number above 0.
    """
    if not (isinstance(target_sum, numbers.Real) and np.isfinite(target_sum) and target_sum > 0):
        raise InvalidOptionError(
            f"target_sum={target_sum!r} is not a finite number > 0: pass e.g. target_sum=1e4"
        )
    if sparse.issparse(X):
        X = sparse.csr_matrix(X, dtype=np.float32, copy=True)
        totals = np.asarray(X.sum(axis=1)).ravel()
        scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
        X = sparse.diags(scale.astype(np.float32)) @ X
        X.data = np.log1p(X.data)
        return X.tocsr()
    X = np.asarray(X, dtype=np.float32)
    totals = X.sum(axis=1, keepdims=True)
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(X * scale)


def pca(X, *, n_comps: int = 30, random_state: int = 0) -> np.ndarray:
    """Principal components of ``X`` (dense or sparse, centred implicitly), ``(n, n_comps)``."""
    import scanpy as sc

    n_comps = max(1, min(n_comps, min(X.shape) - 1))
    return sc.pp.pca(X, n_comps=n_comps, random_state=random_state)
