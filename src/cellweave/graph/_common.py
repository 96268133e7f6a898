"""Argument checks and sparse helpers shared by the graph builders (private to the package)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..validate import check_coordinates

if TYPE_CHECKING:
    from collections.abc import Sequence

#: ``tol`` must stay below sqrt(2) - 1, or a square lattice's diagonals join the first ring.
_MAX_TOL = 0.4
_METHODS = ("auto", "grid", "knn", "radius")
_GRIDS = ("auto", "square", "hex")


def _as_coords(coords, *, name: str = "coords") -> np.ndarray:
    """Return ``coords`` as a finite float64 ``(n_obs, n_dims)`` array or raise."""
    return check_coordinates(coords, name=name, allow_nonfinite=False)


def _check_int(value, *, name: str, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int in ``[low, high]`` or raise :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name} must be an integer, got {value!r}; pass e.g. {name}={low}")
    if value < low or (high is not None and value > high):
        limits = f">= {low}" if high is None else f"between {low} and {high}"
        raise InputError(f"{name}={value} is out of range; pass an integer {limits}")
    return int(value)


def _check_positive(value, *, name: str) -> float:
    """Return ``value`` as a positive finite float or raise :class:`InputError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number) or number <= 0:
        raise InputError(f"{name} must be a positive number, got {value!r}; pass e.g. {name}=1.5")
    return number


def _check_choice(value, *, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise InputError(f"{name}={value!r} is not supported; pass one of {options}")
    return value


def _check_tol(tol) -> float:
    tol = _check_positive(tol, name="tol")
    if tol >= _MAX_TOL:
        raise InputError(
            f"tol={tol} is too large (diagonal neighbours would count as lattice neighbours); "
            f"pass tol < {_MAX_TOL}, e.g. tol=0.25"
        )
    return tol


def _adjacency(rows: np.ndarray, cols: np.ndarray, n: int) -> sp.csr_matrix:
    """Symmetric binary CSR adjacency (float64 ones) with the edges ``rows[k] -- cols[k]``."""
    r = np.concatenate([rows, cols])
    c = np.concatenate([cols, rows])
    adj = sp.csr_matrix((np.ones(r.size, dtype=np.float64), (r, c)), shape=(n, n))
    adj.sum_duplicates()
    adj.data[:] = 1.0
    adj.sort_indices()
    return adj


def _edge_distances(pattern: sp.csr_matrix, coords: np.ndarray) -> sp.csr_matrix:
    """Euclidean distances on the sparsity pattern of ``pattern`` (explicit zeros are kept)."""
    pattern = pattern.tocsr()
    rows = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
    dist = np.linalg.norm(coords[rows] - coords[pattern.indices], axis=1)
    return sp.csr_matrix((dist, pattern.indices.copy(), pattern.indptr.copy()), shape=pattern.shape)


def _binary(matrix: sp.csr_matrix, dtype=np.float64) -> sp.csr_matrix:
    """Copy of ``matrix`` with every stored entry set to 1."""
    out = matrix.astype(dtype, copy=True)
    out.data[:] = 1
    return out
