"""What every imputation method shares: the counts it receives and the proportions it returns.

Every method is a function ``fn(X1, *, coords, random_state, **options) -> P`` taking a spot x
gene count matrix (CSR float64, checked once by :func:`check_counts` at the API entry, trusted
below it) and the spot coordinates (``None`` when absent), and returning expected expression
proportions ``P`` (dense float64, rows sum to 1, strictly positive).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..errors import InputError, MissingKeyError
from ..validate import check_coordinates

__all__ = ["check_counts", "require_coords", "to_proportions"]


def to_proportions(M: np.ndarray, *, floor: float = 1e-8) -> np.ndarray:
    """Rows of a non-negative matrix as strictly positive proportions (rows sum to 1).

    Entries are floored at ``floor`` times the row mean so that no proportion is zero;
    an all-zero row becomes uniform.
    """
    M = np.asarray(M, dtype=np.float64)
    M = np.where(np.isfinite(M), np.maximum(M, 0.0), 0.0)
    totals = M.sum(axis=1, keepdims=True)
    uniform = np.full_like(M, 1.0 / M.shape[1])
    P = np.divide(M, totals, out=uniform.copy(), where=totals > 0)
    P = np.maximum(P, floor / M.shape[1])
    return P / P.sum(axis=1, keepdims=True)


def check_counts(X1) -> sparse.csr_matrix:
    """``X1`` as CSR float64 with at least one spot and gene (once, where the counts enter)."""
    X1 = sparse.csr_matrix(X1, dtype=np.float64)
    if X1.shape[0] == 0 or X1.shape[1] == 0:
        raise InputError(f"the count matrix has shape {X1.shape}; pass at least one spot and gene")
    return X1


def require_coords(coords, *, n_obs: int, method: str, fix: str) -> np.ndarray:
    """Finite ``(n_obs, d)`` coordinates of a spatial method, or a one-line error.

    ``fix`` completes the message when coordinates are missing (e.g. which non-spatial
    method to use instead, or how to switch a spatial loss off).
    """
    if coords is None:
        raise MissingKeyError(
            f"method {method!r} needs spot coordinates in obsm['spatial']; store them there "
            f"(or pass spatial_key=...) or {fix}"
        )
    coords = check_coordinates(coords, name="coordinates", allow_nonfinite=False)
    if coords.shape[0] != n_obs:
        raise InputError(f"{coords.shape[0]} coordinates for {n_obs} spots; pass one row per spot")
    return coords
