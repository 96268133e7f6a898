"""Input checks shared by every cellweave capability.

Each check either returns quietly (or returns the validated object) or raises an
:class:`~cellweave.errors.InputError` subclass whose one-line message names the problem and the
fix. Checks are cheap on large sparse matrices: they look at the stored values (``.data``) of
CSR/CSC/COO matrices, sample entries where a full pass is not needed, and never densify.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .errors import (
    DuplicateNamesError,
    EmptyDataError,
    InputError,
    MissingKeyError,
    NonFiniteError,
    NoSharedFeaturesError,
    NotCountsError,
)

__all__ = [
    "check_adata",
    "check_coordinates",
    "check_counts",
    "check_finite",
    "check_layer",
    "check_mudata",
    "check_nonempty",
    "check_obs_key",
    "check_spatial",
    "check_unique_names",
    "get_matrix",
    "is_counts",
    "nonzero_mask",
    "shared_features",
]

# Rows of a dense matrix handled at once, so that temporary boolean arrays stay small.
_DENSE_CHUNK_ENTRIES = 2**24
_SAMPLE_SEED = 0
_N_SHOWN = 5


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _shown(items: Iterable[Any], n: int = _N_SHOWN) -> str:
    """Format the first ``n`` items as a short list, with ``...`` when there are more."""
    items = list(items)
    text = ", ".join(repr(str(x)) for x in items[:n])
    return f"[{text}{', ...' if len(items) > n else ''}]"


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


# --------------------------------------------------------------------------------------------
# matrix checks
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# AnnData checks
# --------------------------------------------------------------------------------------------
def _keys_hint(keys: Iterable[Any]) -> str:
    keys = list(keys)
    return f"available: {_shown(keys, 10)}" if keys else "there are none"


def get_matrix(adata: AnnData, *, layer: str | None = None, name: str = "adata") -> Any:
    """Return ``adata.X`` or ``adata.layers[layer]``, raising when it is absent.

    Parameters
    ----------
    adata
        The data.
    layer
        Layer to use instead of ``adata.X``.
    name
        How to call ``adata`` in the message.
    """
    if layer is not None:
        return check_layer(adata, layer, name=name)
    if adata.X is None:
        raise MissingKeyError(
            f"{name}.X is empty (None): store the expression matrix in {name}.X or pass "
            f"layer=... ({_keys_hint(adata.layers.keys())})"
        )
    return adata.X


def check_layer(adata: AnnData, layer: str, *, name: str = "adata") -> Any:
    """Return ``adata.layers[layer]``, raising :class:`MissingKeyError` listing the layers."""
    if layer not in adata.layers:
        raise MissingKeyError(
            f"{name}.layers[{layer!r}] is missing: pass one of the layers with layer=... "
            f"({_keys_hint(adata.layers.keys())}) or layer=None to use {name}.X"
        )
    return adata.layers[layer]


def check_obs_key(adata: AnnData, key: str, *, name: str = "adata") -> pd.Series:
    """Return the column ``adata.obs[key]``, raising :class:`MissingKeyError` when absent."""
    if key not in adata.obs.columns:
        raise MissingKeyError(
            f"{name}.obs[{key!r}] is missing: pass the name of an obs column "
            f"({_keys_hint(adata.obs.columns)})"
        )
    return adata.obs[key]


def check_nonempty(
    adata: AnnData,
    *,
    layer: str | None = None,
    allow_zero_cells: bool = False,
    allow_zero_genes: bool = True,
    name: str = "adata",
) -> None:
    """Raise :class:`EmptyDataError` for data without cells/genes or with all-zero ones.

    Parameters
    ----------
    adata
        The data.
    layer
        Check this layer instead of ``adata.X``.
    allow_zero_cells
        Accept cells (rows) whose values are all zero.
    allow_zero_genes
        Accept genes (columns) whose values are all zero.
    name
        How to call ``adata`` in the message.
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise EmptyDataError(
            f"{name} has {adata.n_obs} cells and {adata.n_vars} genes: at least one of each is "
            "required; check that the file and any subsetting kept some data"
        )
    if allow_zero_cells and allow_zero_genes:
        return
    rows, cols = nonzero_mask(get_matrix(adata, layer=layer, name=name))
    if not allow_zero_cells and not rows.all():
        n_zero = int((~rows).sum())
        raise EmptyDataError(
            f"{name} has {n_zero} of {adata.n_obs} cells with only zero values "
            f"(e.g. {_shown(adata.obs_names[~rows])}): remove them first, e.g. "
            "sc.pp.filter_cells(adata, min_counts=1)"
        )
    if not allow_zero_genes and not cols.all():
        n_zero = int((~cols).sum())
        raise EmptyDataError(
            f"{name} has {n_zero} of {adata.n_vars} genes with only zero values "
            f"(e.g. {_shown(adata.var_names[~cols])}): remove them first, e.g. "
            "sc.pp.filter_genes(adata, min_counts=1)"
        )


def check_unique_names(adata: AnnData, *, axis: str = "obs", name: str = "adata") -> None:
    """Raise :class:`DuplicateNamesError` when cell (``axis="obs"``) or gene names repeat."""
    if axis not in ("obs", "var"):
        raise InputError(f"axis must be 'obs' or 'var', got {axis!r}: pass axis='obs' or 'var'")
    index = adata.obs_names if axis == "obs" else adata.var_names
    if index.is_unique:
        return
    dups = index[index.duplicated()].unique()
    what = "cell" if axis == "obs" else "gene"
    raise DuplicateNamesError(
        f"{name} has {len(dups)} duplicated {what} name(s) in {name}.{axis}_names "
        f"(e.g. {_shown(dups)}): make them unique with {name}.{axis}_names_make_unique()"
    )


def check_spatial(
    adata: AnnData,
    *,
    spatial_key: str = "spatial",
    ndim: int | Sequence[int] = (2, 3),
    name: str = "adata",
) -> np.ndarray:
    """Return the spatial coordinates ``adata.obsm[spatial_key]`` as a float array.

    Parameters
    ----------
    adata
        The data.
    spatial_key
        Key of the coordinates in ``adata.obsm``.
    ndim
        Accepted number(s) of coordinate columns.
    name
        How to call ``adata`` in the message.

    Returns
    -------
    ``(n_obs, d)`` float64 array (the stored array itself when it already is one).

    Raises
    ------
    MissingKeyError
        The key is absent.
    InputError
        The coordinates are not numeric, have the wrong number of columns or are not finite.
    """
    allowed = (ndim,) if isinstance(ndim, int | np.integer) else tuple(ndim)
    where = f"{name}.obsm[{spatial_key!r}]"
    if spatial_key not in adata.obsm:
        raise MissingKeyError(
            f"{where} is missing: spatial coordinates are required; store them as an "
            f"(n_obs, 2) array in {where} or pass spatial_key=... "
            f"({_keys_hint(adata.obsm.keys())})"
        )
    coords = check_coordinates(adata.obsm[spatial_key], name=where, ndim=allowed)
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        raise NonFiniteError(
            f"{where} has NaN or infinite coordinates for {int(bad.sum())} of {adata.n_obs} "
            f"cells (e.g. {_shown(adata.obs_names[bad])}): drop those cells, e.g. "
            f"adata = adata[np.isfinite(adata.obsm[{spatial_key!r}]).all(axis=1)].copy()"
        )
    return coords


def check_coordinates(
    coords: Any,
    *,
    name: str = "coords",
    ndim: int | Sequence[int] | None = None,
    allow_nonfinite: bool = True,
) -> np.ndarray:
    """Return ``coords`` (array, DataFrame or sparse) as a float64 ``(n_obs, d)`` array.

    Parameters
    ----------
    coords
        Coordinates, one row per observation.
    name
        How to call them in the message.
    ndim
        Accepted number(s) of columns (any when ``None``).
    allow_nonfinite
        When ``False``, NaN/inf rows raise :class:`NonFiniteError`.

    Raises
    ------
    InputError
        Not numeric, not 2-D, the wrong number of columns, or no rows.
    """
    if isinstance(coords, pd.DataFrame):
        coords = coords.to_numpy()
    if sp.issparse(coords):
        coords = coords.toarray()
    try:
        coords = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"{name} is not numeric ({err}): store the coordinates as a float array"
        ) from None
    allowed = None if ndim is None else ((ndim,) if isinstance(ndim, int | np.integer) else ndim)
    if coords.ndim != 2 or coords.shape[1] < 1 or (allowed and coords.shape[1] not in allowed):
        expected = "d" if not allowed else " or ".join(str(d) for d in allowed)
        raise InputError(
            f"{name} has shape {coords.shape}, but {expected} coordinate columns are required: "
            f"store an (n_obs, {expected}) array of x, y[, z] coordinates"
        )
    if coords.shape[0] == 0:
        raise EmptyDataError(f"{name} has no observations; pass at least one coordinate row")
    if not allow_nonfinite:
        bad = int((~np.isfinite(coords)).any(axis=1).sum())
        if bad:
            raise NonFiniteError(
                f"{name} has {bad} rows with NaN or infinite values; drop or fix those observations"
            )
    return coords


# --------------------------------------------------------------------------------------------
# comparing data sets
# --------------------------------------------------------------------------------------------
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")


def _as_index(x: AnnData | pd.Index | Sequence[str]) -> pd.Index:
    if isinstance(x, AnnData):
        return x.var_names
    return pd.Index(x)


def _mismatch_hint(a: pd.Index, b: pd.Index) -> str:
    """Guess why two feature lists barely overlap."""
    ens_a = a.astype(str).str.match(_ENSEMBL.pattern).mean() if len(a) else 0.0
    ens_b = b.astype(str).str.match(_ENSEMBL.pattern).mean() if len(b) else 0.0
    if (ens_a > 0.5) != (ens_b > 0.5):
        return (
            "one uses Ensembl IDs and the other gene symbols: use the same kind of names in "
            "both, e.g. adata.var_names = adata.var['gene_symbols'] (or the column that holds "
            "them), then adata.var_names_make_unique()"
        )
    upper_a = set(a.astype(str).str.upper())
    upper_b = set(b.astype(str).str.upper())
    if len(upper_a & upper_b) > len(set(a.astype(str)) & set(b.astype(str))):
        return (
            "the names differ in upper/lower case (e.g. human 'GAPDH' vs mouse 'Gapdh'): check "
            "that both data sets come from the same species and use the same case"
        )
    return (
        "check that both data sets come from the same species and name features the same way "
        "(gene symbols vs Ensembl IDs, case, version suffixes)"
    )


def shared_features(
    a: AnnData | pd.Index | Sequence[str],
    b: AnnData | pd.Index | Sequence[str],
    *,
    min_shared: int = 1,
    names: tuple[str, str] = ("first data set", "second data set"),
) -> pd.Index:
    """Return the features (``var_names``) present in both ``a`` and ``b``, in ``a``'s order.

    Parameters
    ----------
    a, b
        AnnData objects (their ``var_names`` are used) or lists of feature names.
    min_shared
        Raise when fewer features than this are shared.
    names
        How to call ``a`` and ``b`` in the message.

    Raises
    ------
    NoSharedFeaturesError
        Fewer than ``min_shared`` features are shared; the message guesses why.
    """
    idx_a, idx_b = _as_index(a), _as_index(b)
    shared = idx_a[idx_a.isin(idx_b)].unique()
    if len(shared) < min_shared:
        raise NoSharedFeaturesError(
            f"{names[0]} ({len(idx_a)} features) and {names[1]} ({len(idx_b)} features) share "
            f"{len(shared)} feature name(s), but at least {min_shared} are required: "
            f"{_mismatch_hint(idx_a, idx_b)}"
        )
    return shared


# --------------------------------------------------------------------------------------------
# composite checks
# --------------------------------------------------------------------------------------------
def check_adata(
    adata: Any,
    *,
    layer: str | None = None,
    require_counts: bool = False,
    spatial_key: str | None = None,
    allow_zero_genes: bool = True,
    allow_zero_cells: bool = False,
    name: str = "adata",
) -> Any:
    """Run the usual checks on an AnnData and return the matrix to work on.

    Checks, in order: ``adata`` is an AnnData; cell and gene names are unique; the matrix
    (``adata.X`` or the layer) exists, is non-empty and finite; optionally that it holds raw
    counts and that spatial coordinates are present.

    Parameters
    ----------
    adata
        The data.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    require_counts
        Require raw counts (:func:`check_counts`).
    spatial_key
        When given, require valid coordinates in ``adata.obsm[spatial_key]``.
    allow_zero_genes, allow_zero_cells
        See :func:`check_nonempty`.
    name
        How to call ``adata`` in messages.

    Returns
    -------
    The validated matrix (``adata.X`` or the layer), not copied.
    """
    if not isinstance(adata, AnnData):
        kind = type(adata).__name__
        hint = (
            f"pick one modality, e.g. {name}.mod['rna']"
            if kind == "MuData"
            else "load the data with cellweave.io.read or anndata.read_h5ad"
        )
        raise InputError(f"{name} must be an AnnData, got {kind}: {hint}")
    check_unique_names(adata, axis="obs", name=name)
    check_unique_names(adata, axis="var", name=name)
    X = get_matrix(adata, layer=layer, name=name)
    check_nonempty(
        adata,
        layer=layer,
        allow_zero_cells=allow_zero_cells,
        allow_zero_genes=allow_zero_genes,
        name=name,
    )
    where = f"{name}.X" if layer is None else f"{name}.layers[{layer!r}]"
    check_finite(X, name=where)
    if require_counts:
        check_counts(X, name=where)
    if spatial_key is not None:
        check_spatial(adata, spatial_key=spatial_key, name=name)
    return X


def check_mudata(
    mdata: Any,
    *,
    modalities: Sequence[str] | None = None,
    name: str = "mdata",
    values: bool = True,
    hint: str | None = None,
) -> dict[str, AnnData]:
    """Check a MuData and return its modalities by name.

    Parameters
    ----------
    mdata
        The data.
    modalities
        Modalities that must be present (all of ``mdata.mod`` when ``None``). Each of them must
        pass :func:`check_adata` with all-zero cells and genes allowed (in a mosaic, a
        modality may hold only the cells it measured).
    name
        How to call ``mdata`` in messages.
    values
        Also check each modality's matrix (non-empty, finite, via :func:`check_adata`);
        ``False`` checks names only (e.g. a backed file, whose values the caller samples).
    hint
        Extra words for the not-a-MuData message (another input the caller accepts).

    Returns
    -------
    ``{modality: AnnData}`` for the checked modalities, in the requested order.
    """
    from mudata import MuData

    if not isinstance(mdata, MuData):
        raise InputError(
            f"{name} must be a MuData, got {type(mdata).__name__}: load multi-modal data with "
            "cellweave.io.read('file.h5mu') or build one with mudata.MuData({'rna': ..., ...})"
            + (f" ({hint})" if hint else "")
        )
    wanted = list(mdata.mod.keys()) if modalities is None else list(modalities)
    missing = [m for m in wanted if m not in mdata.mod]
    if missing:
        raise MissingKeyError(
            f"{name} has no modality {missing[0]!r}: pass modalities that exist "
            f"({_keys_hint(mdata.mod.keys())}) or add them to {name}.mod"
        )
    if not wanted:
        raise EmptyDataError(f"{name} has no modalities: add at least one AnnData to {name}.mod")
    check_unique_names(mdata, axis="obs", name=name)
    out = {}
    for mod in wanted:
        where = f"{name}['{mod}']"
        if mdata.mod[mod].n_obs == 0 or mdata.mod[mod].n_vars == 0:
            what = "no cells" if mdata.mod[mod].n_obs == 0 else "no features"
            raise EmptyDataError(
                f"{name} modality {mod!r} holds {what}: remove it (del {name}.mod[{mod!r}]; "
                f"{name}.update()) or leave it out of modalities"
            )
        if values:
            check_adata(mdata.mod[mod], allow_zero_cells=True, allow_zero_genes=True, name=where)
        else:
            check_unique_names(mdata.mod[mod], axis="obs", name=where)
            check_unique_names(mdata.mod[mod], axis="var", name=where)
        out[mod] = mdata.mod[mod]
    return out
