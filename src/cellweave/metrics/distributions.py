"""Distribution scores and the input handling shared by :mod:`cellweave.metrics`.

Jensen-Shannon divergence is computed in **nats** (natural logarithm), as
``scipy.stats.entropy`` does in the SpatialBenchmarking code (Li et al. 2022): identical
distributions score 0 and distributions with disjoint support score ``ln 2 ≈ 0.693``. Pass
``base=2`` for bits (disjoint support then scores 1).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import rel_entr

from ..errors import EmptyDataError, InputError, MissingKeyError, NonFiniteError

__all__ = ["js_divergence"]

#: Default number of columns densified at a time when a sparse matrix is scored.
BLOCK_SIZE = 512


# --------------------------------------------------------------------------------------
# Input handling shared by the metrics modules
# --------------------------------------------------------------------------------------


def as_matrix(x: Any, name: str) -> tuple[Any, pd.Index | None, pd.Index | None]:
    """Split ``x`` into a 2-D matrix (dense float ndarray or CSR) and its row/column names.

    Accepts numpy arrays, scipy sparse matrices, :class:`pandas.DataFrame` and
    :class:`anndata.AnnData` (``.X``, ``obs_names``, ``var_names``).
    """
    rows = cols = None
    if hasattr(x, "obs_names") and hasattr(x, "var_names") and hasattr(x, "X"):
        rows, cols, x = pd.Index(x.obs_names), pd.Index(x.var_names), x.X
    elif isinstance(x, pd.DataFrame):
        rows, cols, x = x.index, x.columns, x.to_numpy(dtype=np.float64)
    if sparse.issparse(x):
        mat = sparse.csr_matrix(x, dtype=np.float64)
        values = mat.data
    else:
        mat = np.asarray(x, dtype=np.float64)
        values = mat
    if mat.ndim != 2:
        raise InputError(
            f"{name} has {mat.ndim} dimension(s): a 2-D (n_obs, n_features) matrix is "
            "required; reshape it, e.g. x.reshape(-1, 1) for a single feature"
        )
    if 0 in mat.shape:
        raise EmptyDataError(
            f"{name} has shape {mat.shape}: at least one observation and one feature are "
            "required; pass a non-empty matrix"
        )
    if not np.isfinite(values).all():
        raise NonFiniteError(
            f"{name} holds NaN or infinite values: metrics need finite numbers; fill or "
            "drop them first (e.g. np.nan_to_num)"
        )
    return mat, rows, cols


def _align(
    names_ref: pd.Index | None, names_other: pd.Index | None, what: str
) -> np.ndarray | None:
    """Positions that reorder ``names_other`` to ``names_ref`` (None when no reordering)."""
    if names_ref is None or names_other is None:
        return None
    if names_ref.equals(names_other):
        return None
    if names_ref.has_duplicates or names_other.has_duplicates:
        raise InputError(
            f"{what} names are duplicated and differ in order between true and pred: "
            "they cannot be aligned; make them unique (e.g. adata.var_names_make_unique())"
        )
    missing = names_ref.difference(names_other)
    extra = names_other.difference(names_ref)
    if len(missing) or len(extra):
        raise InputError(
            f"true and pred have different {what} names (missing in pred: "
            f"{list(missing[:5])}, extra in pred: {list(extra[:5])}): pass the same "
            f"{what}s in both, e.g. pred[true.columns]"
        )
    return names_other.get_indexer(names_ref)


def paired_matrices(
    true: Any, pred: Any, *, feature: str = "feature"
) -> tuple[Any, Any, pd.Index | None, pd.Index | None]:
    """Validate ``true``/``pred`` as same-shape matrices, aligned by names when both carry them.

    Returns the two matrices (pred reordered to true's rows/columns when both carry names),
    then the row names and column names (true's, else pred's, else None). ``feature`` names
    the columns in error messages ("gene", "cell type").
    """
    t, t_rows, t_cols = as_matrix(true, "true")
    p, p_rows, p_cols = as_matrix(pred, "pred")
    row_order = _align(t_rows, p_rows, "observation")
    col_order = _align(t_cols, p_cols, feature)
    if row_order is not None:
        p = p[row_order]
    if col_order is not None:
        p = p[:, col_order]
    if t.shape != p.shape:
        raise InputError(
            f"true has shape {t.shape} but pred has shape {p.shape}: both must be "
            "(n_obs, n_features) over the same observations and features"
        )
    rows = t_rows if t_rows is not None else p_rows
    return t, p, rows, t_cols if t_cols is not None else p_cols


def select_columns(
    t: Any, p: Any, cols: pd.Index | None, genes: Sequence[str] | None
) -> tuple[Any, Any, pd.Index]:
    """Apply the ``genes`` argument: a selection when names are known, else labels."""
    n = t.shape[1]
    if genes is None:
        return t, p, cols if cols is not None else pd.RangeIndex(n)
    genes = pd.Index(genes)
    if cols is None:
        if len(genes) != n:
            raise InputError(
                f"genes has {len(genes)} names but the matrices have {n} columns: pass one "
                "name per column"
            )
        return t, p, genes
    pos = cols.get_indexer(genes)
    if (pos < 0).any():
        absent = list(genes[pos < 0][:5])
        raise MissingKeyError(
            f"genes {absent} are not among the columns of true/pred: pass genes that "
            "both matrices contain"
        )
    return t[:, pos], p[:, pos], genes


def column_blocks(
    t: Any, p: Any, block_size: int = BLOCK_SIZE
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield ``(columns, dense_true_block, dense_pred_block)`` over column blocks.

    Dense inputs are yielded as views in a single block; sparse ones are densified
    ``block_size`` columns at a time to bound memory.
    """
    n = t.shape[1]
    if not sparse.issparse(t) and not sparse.issparse(p):
        yield slice(0, n), t, p
        return
    tc = t.tocsc() if sparse.issparse(t) else t
    pc = p.tocsc() if sparse.issparse(p) else p
    for start in range(0, n, block_size):
        sl = slice(start, min(start + block_size, n))
        yield sl, _dense(tc[:, sl]), _dense(pc[:, sl])


def _dense(x: Any) -> np.ndarray:
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


def as_label_array(x: Any, name: str, n: int | None = None) -> np.ndarray:
    """Labels as a 1-D object array, checked for length and missing values."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D (one label per observation); got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(
            f"{name} has {arr.shape[0]} entries but there are {n} observations: pass one "
            "label per observation, in the same order"
        )
    if pd.isna(arr).any():
        raise InputError(
            f"{name} holds missing labels (NaN/None): every observation needs a label; fill "
            "or drop them first"
        )
    return arr


# --------------------------------------------------------------------------------------
# Probability normalisation and Jensen-Shannon divergence
# --------------------------------------------------------------------------------------


def to_probabilities(x: np.ndarray, axis: int) -> np.ndarray:
    """Scale ``x`` to sum 1 along ``axis`` (SpatialBenchmarking's ``scale_plus``).

    A slice that sums to zero becomes the uniform distribution (maximum entropy: it carries
    no information), so that an all-zero prediction is scored rather than dropped as NaN.
    """
    total = x.sum(axis=axis, keepdims=True)
    zero = total <= 0
    size = x.shape[axis]
    out = np.divide(x, np.where(zero, 1.0, total))
    return np.where(zero, 1.0 / size, out)


def _js_probabilities(p: np.ndarray, q: np.ndarray, axis: int) -> np.ndarray:
    """JS divergence (nats) between probability vectors that already sum to 1 along ``axis``."""
    m = 0.5 * (p + q)
    # rel_entr(0, y) == 0 and m > 0 wherever p or q is, so this is finite and warning-free.
    kl_p = rel_entr(p, m).sum(axis=axis)
    kl_q = rel_entr(q, m).sum(axis=axis)
    return np.clip(0.5 * (kl_p + kl_q), 0.0, np.log(2.0))


def js_divergence(p: Any, q: Any, *, axis: int = 1, base: float | None = None) -> np.ndarray:
    """Jensen-Shannon divergence between matching distributions along ``axis``.

    Each slice of ``p`` and ``q`` along ``axis`` (by default each row, e.g. the cell-type
    fractions of one spot) is scaled to sum 1 and compared::

        JS(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M),   M = (P + Q) / 2

    exactly as in SpatialBenchmarking (``0.5*entropy(P, M) + 0.5*entropy(Q, M)``).

    Parameters
    ----------
    p, q
        Non-negative arrays of the same shape (1-D, 2-D dense or sparse, or DataFrames).
        A 1-D pair is treated as one distribution each.
    axis
        Axis along which each distribution lies: ``1`` compares rows, ``0`` columns.
    base
        Logarithm base. ``None`` (default) gives nats, so the maximum (disjoint support) is
        ``ln 2``; ``2`` gives bits with maximum 1.

    Returns
    -------
    One divergence per distribution (a float for 1-D input). A slice summing to zero is
    treated as the uniform distribution.

    Raises
    ------
    InputError
        Shapes differ or values are negative; ``NonFiniteError`` for NaN/inf.
    """
    p_arr = np.asarray(_dense(p), dtype=np.float64)
    q_arr = np.asarray(_dense(q), dtype=np.float64)
    if p_arr.shape != q_arr.shape:
        raise InputError(
            f"p has shape {p_arr.shape} but q has shape {q_arr.shape}: JS divergence compares "
            "matching distributions, pass arrays of the same shape"
        )
    scalar = p_arr.ndim == 1
    if scalar:
        p_arr, q_arr, axis = p_arr[None, :], q_arr[None, :], 1
    if p_arr.ndim != 2 or axis not in (0, 1, -1, -2):
        raise InputError(f"js_divergence needs 1-D or 2-D input and axis 0 or 1, got axis={axis}")
    if p_arr.size == 0:
        raise EmptyDataError("p and q are empty: pass at least one non-empty distribution")
    for arr, name in ((p_arr, "p"), (q_arr, "q")):
        if not np.isfinite(arr).all():
            raise NonFiniteError(f"{name} holds NaN or infinite values: fill or drop them first")
        if (arr < 0).any():
            raise InputError(
                f"{name} holds negative values: distributions must be non-negative; clip "
                "them (np.clip(x, 0, None)) or pass proportions"
            )
    out = _js_probabilities(to_probabilities(p_arr, axis), to_probabilities(q_arr, axis), axis)
    if base is not None:
        out = out / np.log(base)
    return float(out[0]) if scalar else out
