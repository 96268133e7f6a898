"""Structural checks of the matrices read from a file, before anything densifies them.

A corrupt or truncated ``.h5ad``/``.h5mu`` can hold a sparse matrix whose arrays still read but
do not fit together: column indices out of range, a decreasing or short ``indptr``, arrays of
different lengths. scipy trusts them, and ``toarray`` or a column slice then writes or reads
outside its buffers (a segmentation fault). :func:`check_structure` looks at every sparse
matrix of an AnnData or MuData (``X``, ``layers``, ``obsm``, ``obsp``, ``varm``, ``varp``,
``raw``), in memory or backed, and at the dtype of ``X`` and the layers: vectorised numpy,
``O(nnz)`` time, never dense; a backed matrix's indices are read in bounded chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import FileFormatError

__all__ = ["check_sparse", "check_structure", "sparse_problem"]

#: Entries of a backed index array read at once (64 MiB of int32).
_CHUNK = 2**24
#: Kinds of numpy dtypes a matrix may hold: bool, signed/unsigned integers, floats, complex.
_NUMERIC_KINDS = "biufc"
_FIX = "the file is corrupt or truncated: re-export it"


def _dtype_problem(dtype: Any) -> str | None:
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        return f"values of non-numeric type {dtype}"
    return None if kind in _NUMERIC_KINDS else f"values of non-numeric type {np.dtype(dtype)}"


def _chunks(array: Any, size: int = _CHUNK) -> Iterator[np.ndarray]:
    """Consecutive pieces of a 1-D numpy array (views) or on-disk dataset (read piecewise)."""
    n = int(array.shape[0])
    if isinstance(array, np.ndarray):
        yield array
        return
    for start in range(0, n, size):
        yield np.asarray(array[start : start + size])


def _compressed_problem(
    indptr: np.ndarray, indices: Any, n_data: int, dtype: Any, shape: tuple[int, int], fmt: str
) -> str | None:
    """What is wrong with a CSR/CSC matrix given as its arrays (``None``: nothing)."""
    if len(shape) != 2 or min(shape) < 0:
        return f"an invalid shape {tuple(shape)}"
    n_major, n_minor = (shape[0], shape[1]) if fmt == "csr" else (shape[1], shape[0])
    what_major, what_minor = ("row", "column") if fmt == "csr" else ("column", "row")
    problem = _dtype_problem(dtype)
    if problem:
        return problem
    indptr = np.asarray(indptr)
    for name, array_dtype in (("indptr", indptr.dtype), ("indices", indices.dtype)):
        if np.dtype(array_dtype).kind not in "iu":
            return f"{name} of type {array_dtype} instead of integers"
    nnz = int(indices.shape[0])
    if indptr.ndim != 1 or indptr.shape[0] != n_major + 1:
        return (
            f"indptr of length {indptr.shape[0] if indptr.ndim else 0} for {n_major} "
            f"{what_major}s of shape {tuple(shape)} (expected {n_major + 1})"
        )
    if n_data != nnz:
        return f"{n_data} stored values but {nnz} {what_minor} indices"
    if indptr[0] != 0 or indptr[-1] != nnz:
        return f"indptr from {indptr[0]} to {indptr[-1]} (expected 0 to {nnz})"
    if n_major and (np.diff(indptr) < 0).any():
        return "a decreasing indptr"
    for piece in _chunks(indices):
        if piece.size and (piece.min() < 0 or piece.max() >= n_minor):
            bad = piece[(piece < 0) | (piece >= n_minor)][0]
            return f"{what_minor} index {bad} outside [0, {n_minor})"
    return None


def sparse_problem(matrix: Any) -> str | None:
    """What is structurally wrong with a sparse matrix, or ``None`` when it is sound.

    Parameters
    ----------
    matrix
        A scipy sparse matrix or array (CSR, CSC, COO; other formats are converted by scipy,
        which checks them), or a backed AnnData sparse dataset (``adata.X`` of a file read
        with ``backed="r"``), whose index array is read in chunks.

    Returns
    -------
    A short phrase naming the first problem found (e.g. ``"column index 51 outside [0, 40)"``),
    or ``None``.
    """
    if sp.issparse(matrix):
        fmt = matrix.format
        if fmt in ("csr", "csc"):
            n_data = matrix.data.shape[0]
            args = (matrix.indptr, matrix.indices, n_data, matrix.dtype, matrix.shape, fmt)
            return _compressed_problem(*args)
        if fmt == "coo":
            return _coo_problem(matrix)
        return _dtype_problem(matrix.dtype)
    group = getattr(matrix, "group", None)  # anndata's backed CSR/CSC dataset
    if group is not None and {"indptr", "indices", "data"} <= set(group.keys()):
        fmt = getattr(matrix, "format", "csr")
        fmt = fmt if isinstance(fmt, str) else ("csc" if "csc" in str(fmt) else "csr")
        shape = tuple(int(s) for s in group.attrs.get("shape", matrix.shape))
        data = group["data"]
        indptr = group["indptr"][...]
        return _compressed_problem(indptr, group["indices"], data.shape[0], data.dtype, shape, fmt)
    return None


def _coo_problem(matrix: Any) -> str | None:
    problem = _dtype_problem(matrix.dtype)
    if problem:
        return problem
    coords = getattr(matrix, "coords", None) or (matrix.row, matrix.col)
    if any(c.shape[0] != matrix.data.shape[0] for c in coords):
        return "coordinate arrays and values of different lengths"
    for axis, (c, n) in enumerate(zip(coords, matrix.shape, strict=False)):
        if c.size and (c.min() < 0 or c.max() >= n):
            return f"{('row', 'column')[axis]} index outside [0, {n})"
    return None


def check_sparse(matrix: Any, *, what: str = "the matrix", source: Any = None) -> None:
    """Raise :class:`~cellweave.errors.FileFormatError` if ``matrix`` is structurally unsound.

    Parameters
    ----------
    matrix
        As for :func:`sparse_problem`; dense arrays are checked for a numeric dtype only.
    what
        Where the matrix lives, for the message (``"X"``, ``"layers['counts']"``).
    source
        The file it was read from, for the message.
    """
    problem = sparse_problem(matrix) if _is_sparse_like(matrix) else _dense_problem(matrix)
    if problem:
        where = f"{source}: " if source is not None else ""
        raise FileFormatError(f"{where}{what} has {problem}: {_FIX}")


def _is_sparse_like(matrix: Any) -> bool:
    return sp.issparse(matrix) or getattr(matrix, "group", None) is not None


def _dense_problem(matrix: Any) -> str | None:
    dtype = getattr(matrix, "dtype", None)
    if not isinstance(dtype, np.dtype):
        return None  # DataFrames (obsm) and other containers: nothing to densify
    return _dtype_problem(dtype)


def _matrices(adata: Any, prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    """``(name, matrix, dense_dtype_matters)`` of every matrix of an AnnData."""
    if adata.X is not None:
        yield f"{prefix}X", adata.X, True
    for key, value in adata.layers.items():
        yield f"{prefix}layers[{key!r}]", value, True
    for attr in ("obsm", "obsp", "varm", "varp"):
        for key, value in getattr(adata, attr).items():
            yield f"{prefix}{attr}[{key!r}]", value, False
    raw = getattr(adata, "raw", None)
    if raw is not None and raw.X is not None:
        yield f"{prefix}raw.X", raw.X, True


def check_structure(data: Any, *, source: Any = None) -> None:
    """Check every matrix of an AnnData or MuData read from ``source`` (see the module).

    Sparse matrices (anywhere) must have consistent arrays and in-range indices; ``X``, the
    layers and ``raw.X`` must hold numbers. Raises
    :class:`~cellweave.errors.FileFormatError`, one line naming the file, the matrix, the
    problem and the fix.
    """
    mods = getattr(data, "mod", None)
    items: list[tuple[str, Any, bool]] = []
    if mods is not None:  # MuData: each modality, then the joint obsm/obsp
        for name, adata in mods.items():
            items.extend(_matrices(adata, prefix=f"modality {name!r} "))
        for attr in ("obsm", "obsp", "varm", "varp"):
            for key, value in getattr(data, attr).items():
                items.append((f"{attr}[{key!r}]", value, False))
    else:
        items.extend(_matrices(data))
    for what, matrix, dense_dtype in items:
        if _is_sparse_like(matrix) or dense_dtype:
            check_sparse(matrix, what=what, source=source)
