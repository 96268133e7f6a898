"""Checks on a matrix: raw counts, finite values, non-zero rows and columns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import (
    NonFiniteError,
    NotCountsError,
)

__all__ = [
    "check_counts",
    "check_finite",
    "has_nonzero",
    "is_counts",
    "log_transformed_problem",
    "nonzero_mask",
]


# Rows of a dense matrix handled at once, so that temporary boolean arrays stay small.
_DENSE_CHUNK_ENTRIES = 2**24
_SAMPLE_SEED = 0


def _stored_values(X: Any) -> np.ndarray:
    """Return the stored values of ``X`` as a 1-D array (a view for CSR/CSC/COO/BSR)."""
    if sp.issparse(X):
        if X.format not in ("csr", "csc", "coo", "bsr"):
            X = X.tocsr()  # LIL/DOK/DIA: rare, and they have no flat array of stored values
        return X.data.ravel()
    return np.asarray(X).reshape(-1)


def _sample_values(X: Any, n_sample: int) -> np.ndarray:
    """Return at most ``n_sample`` stored entries of ``X``, reproducibly chosen."""
    rng = np.random.default_rng(_SAMPLE_SEED)
    if sp.issparse(X):
        values = _stored_values(X)
        if values.size <= n_sample:
            return values
        return values[rng.integers(0, values.size, size=n_sample)]
    arr = np.asarray(X)
    if arr.size <= n_sample:
        return arr.reshape(-1)
    if arr.ndim != 2:
        return arr.reshape(-1)[rng.integers(0, arr.size, size=n_sample)]
    # Fancy indexing on (row, col) pairs reads the entries without copying the matrix.
    rows = rng.integers(0, arr.shape[0], size=n_sample)
    cols = rng.integers(0, arr.shape[1], size=n_sample)
    return arr[rows, cols]


def _dense_row_blocks(arr: np.ndarray) -> Iterable[np.ndarray]:
    """Yield consecutive row blocks of a 2-D array, each of at most ~16M entries."""
    step = max(1, _DENSE_CHUNK_ENTRIES // max(1, arr.shape[1]))
    for start in range(0, arr.shape[0], step):
        yield arr[start : start + step]


def _counts_problem(X: Any, *, n_sample: int) -> str | None:
    """Describe why ``X`` does not look like raw counts, or return ``None`` if it does."""
    dtype = np.dtype(X.dtype) if hasattr(X, "dtype") else np.asarray(X).dtype
    if dtype == np.bool_ or np.issubdtype(dtype, np.unsignedinteger):
        return None
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        return f"has dtype {dtype}, not a numeric type"
    values = _sample_values(X, n_sample)
    if values.size == 0:
        return None
    if np.issubdtype(dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all():
            return f"holds {int((~finite).sum())} NaN/infinite value(s) among those sampled"
    vmin = values.min()
    if vmin < 0:
        return f"holds negative values (min {vmin:.4g}), so it looks scaled or centred"
    if np.issubdtype(dtype, np.floating):
        frac = values != np.round(values)
        if frac.any():
            example = values[np.argmax(frac)]
            return (
                f"holds non-integer values (e.g. {example:.4g}), so it looks normalized or "
                "log-transformed"
            )
    return None


def is_counts(X: Any, *, n_sample: int = 100_000) -> bool:
    """Return whether ``X`` looks like raw counts: non-negative integer values.

    Parameters
    ----------
    X
        Dense array or scipy sparse matrix. A float dtype holding whole numbers counts as
        counts; booleans and unsigned integers always do.
    n_sample
        At most this many stored entries are inspected (chosen reproducibly), so the check
        costs the same on any size of matrix. Normalized or log-transformed data are non-integer
        almost everywhere, so a sample finds them.

    Returns
    -------
    ``True`` when every inspected entry is a finite, non-negative whole number.
    """
    return _counts_problem(X, n_sample=n_sample) is None


def log_transformed_problem(
    X: Any, *, uns: Any = None, n_rows: int = 200, tol: float = 1e-3
) -> str | None:
    """Why ``X`` is certainly ``log1p``-transformed already, or ``None``.

    Only sure signs count, so that continuous intensities (in situ, protein) are never taken
    for log data: scanpy's mark ``uns["log1p"]`` (left by ``sc.pp.log1p``); ``expm1`` of the
    values giving whole numbers (``log1p`` of counts); or ``expm1`` giving rows with one
    common total (``sc.pp.normalize_total`` then ``log1p``). Raw counts give ``None``.

    Parameters
    ----------
    X
        Dense array or scipy sparse matrix (the whole matrix, not a subset of its genes).
    uns
        The AnnData's ``uns`` (optional).
    n_rows
        Rows inspected at most (evenly spaced, so the check costs the same on any size).
    tol
        Relative tolerance of "whole number" and "one common total" (float32 rounding).
    """
    if is_counts(X):
        return None
    if uns is not None and "log1p" in uns:
        return "carries uns['log1p'], scanpy's mark of sc.pp.log1p"
    rows = np.unique(np.linspace(0, X.shape[0] - 1, min(n_rows, X.shape[0])).astype(int))
    block = X[rows]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    block = block.astype(np.float64)
    if not np.isfinite(block).all() or (block < 0).any():
        return None  # other checks name these
    raw = np.expm1(block)
    nonzero = raw[raw > 0]
    if nonzero.size and (np.abs(nonzero - np.round(nonzero)) <= tol * np.maximum(1, nonzero)).all():
        return "its values are log1p of whole numbers (log-transformed counts)"
    totals = raw.sum(axis=1)
    totals = totals[totals > 0]
    if totals.size >= 5 and totals.std() <= tol * totals.mean():
        return f"expm1 of its rows all sum to {totals.mean():.4g} (normalize_total, then log1p)"
    return None


def check_counts(X: Any, *, name: str = "adata.X", n_sample: int = 100_000) -> None:
    """Raise :class:`NotCountsError` unless ``X`` looks like raw counts (see :func:`is_counts`).

    Parameters
    ----------
    X
        Dense array or scipy sparse matrix.
    name
        How to call the matrix in the message (``"adata.X"``, ``"adata.layers['counts']"``).
    n_sample
        Number of entries inspected at most.
    """
    problem = _counts_problem(X, n_sample=n_sample)
    if problem is not None:
        raise NotCountsError(
            f"{name} {problem}, but raw counts (non-negative integers) are required: pass the "
            "unnormalized counts, e.g. with layer='counts' if they are in adata.layers['counts'] "
            "(keep a copy with adata.layers['counts'] = adata.X.copy() before normalizing)"
        )


def check_finite(X: Any, *, name: str = "adata.X") -> None:
    """Raise :class:`NonFiniteError` when ``X`` holds NaN or infinite values.

    Sparse matrices are checked on their stored values; dense ones in row blocks, so no copy of
    the whole matrix is made.

    Parameters
    ----------
    X
        Dense array or scipy sparse matrix.
    name
        How to call the matrix in the message.
    """
    dtype = np.dtype(X.dtype) if hasattr(X, "dtype") else np.asarray(X).dtype
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating)):
        return  # integers and booleans cannot hold NaN or inf
    values = _stored_values(X) if sp.issparse(X) else np.asarray(X)
    # Fast path: a finite float64 sum means every value is finite.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(values, dtype=np.float64 if dtype.kind == "f" else None)
    if np.isfinite(total):
        return
    blocks = _dense_row_blocks(values) if values.ndim == 2 else [values]
    n_nan = n_inf = 0
    for block in blocks:
        n_nan += int(np.count_nonzero(np.isnan(block)))
        n_inf += int(np.count_nonzero(np.isinf(block)))
    if n_nan or n_inf:
        raise NonFiniteError(
            f"{name} holds {n_nan} NaN and {n_inf} infinite value(s), but finite values are "
            "required: remove or replace them first (e.g. X[~np.isfinite(X)] = 0), or pass the "
            "raw counts with layer=..."
        )


def nonzero_mask(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return boolean masks of the rows and of the columns of ``X`` with a non-zero value.

    Explicitly stored zeros of sparse matrices count as zero. Nothing of the size of ``X`` is
    allocated for dense matrices (they are scanned in row blocks).

    Parameters
    ----------
    X
        2-D dense array or scipy sparse matrix.

    Returns
    -------
    ``(rows, cols)``: ``rows[i]`` is ``True`` when row ``i`` has a non-zero entry, ``cols[j]``
    likewise for column ``j``.
    """
    n_rows, n_cols = X.shape
    if sp.issparse(X):
        if X.format not in ("csr", "csc", "coo"):
            X = X.tocsr()
        nz = X.data != 0
        if X.format == "coo":
            rows = np.bincount(X.row[nz], minlength=n_rows) > 0
            cols = np.bincount(X.col[nz], minlength=n_cols) > 0
            return rows, cols
        n_major = n_rows if X.format == "csr" else n_cols
        n_minor = n_cols if X.format == "csr" else n_rows
        minor = np.bincount(X.indices[nz], minlength=n_minor) > 0
        if nz.all():
            major = np.diff(X.indptr) > 0
        else:
            cum = np.concatenate([[0], np.cumsum(nz)])
            major = (cum[X.indptr[1:]] - cum[X.indptr[:-1]]) > 0
        major = major[:n_major]
        return (major, minor) if X.format == "csr" else (minor, major)
    arr = np.asarray(X)
    rows = np.zeros(n_rows, dtype=bool)
    cols = np.zeros(n_cols, dtype=bool)
    start = 0
    for block in _dense_row_blocks(arr):
        nz = block != 0
        rows[start : start + block.shape[0]] = nz.any(axis=1)
        cols |= nz.any(axis=0)
        start += block.shape[0]
    return rows, cols


def has_nonzero(X: Any) -> bool:
    """Whether ``X`` (dense or sparse) holds at least one non-zero value; stops at the first
    dense row block that has one and never densifies a sparse matrix."""
    if sp.issparse(X):
        return bool(np.any(_stored_values(X) != 0))
    arr = np.asarray(X)
    if arr.ndim != 2:
        return bool(np.any(arr != 0))
    return any(bool(np.any(block != 0)) for block in _dense_row_blocks(arr))
