"""Checks on the fields of an AnnData: matrix, layers, obs keys, names, coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._docs import doc_adata, doc_adata_name, doc_params
from ..errors import (
    DuplicateNamesError,
    EmptyDataError,
    InputError,
    MissingKeyError,
    NonFiniteError,
)
from ._format import _keys_hint, _shown
from .matrix import has_nonzero, nonzero_mask

__all__ = [
    "check_coordinates",
    "check_layer",
    "check_nonempty",
    "check_obs_key",
    "check_spatial",
    "check_spread",
    "check_unique_names",
    "get_matrix",
    "matrix_label",
]


def matrix_label(name: str = "adata", layer: str | None = None) -> str:
    """How messages name the matrix read: ``"adata.X"`` or ``"adata.layers['counts']"``."""
    return f"{name}.X" if layer is None else f"{name}.layers[{layer!r}]"


@doc_params(adata=doc_adata, name=doc_adata_name)
def get_matrix(adata: AnnData, *, layer: str | None = None, name: str = "adata") -> Any:
    """Return ``adata.X`` or ``adata.layers[layer]``, raising when it is absent.

    Parameters
    ----------
    {adata}
    layer
        Layer to use instead of ``adata.X``.
    {name}
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


@doc_params(adata=doc_adata, name=doc_adata_name)
def check_nonempty(
    adata: AnnData,
    *,
    layer: str | None = None,
    allow_zero_cells: bool = False,
    allow_zero_genes: bool = True,
    allow_all_zero: bool = False,
    name: str = "adata",
) -> None:
    """Raise :class:`EmptyDataError` for data without cells/genes, with all-zero ones, or
    (unless ``allow_all_zero``) whose matrix holds only zeros.

    Parameters
    ----------
    {adata}
    layer
        Check this layer instead of ``adata.X``.
    allow_zero_cells
        Accept cells (rows) whose values are all zero.
    allow_zero_genes
        Accept genes (columns) whose values are all zero.
    allow_all_zero
        Accept a matrix without any non-zero value (nothing can be learnt from it).
    {name}
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise EmptyDataError(
            f"{name} has {adata.n_obs} cells and {adata.n_vars} genes: at least one of each is "
            "required; check that the file and any subsetting kept some data"
        )
    X = get_matrix(adata, layer=layer, name=name)
    # without zero cells allowed, an all-zero matrix is refused below as "n of n cells"
    if allow_zero_cells and not allow_all_zero and not has_nonzero(X):
        where = matrix_label(name, layer)
        raise EmptyDataError(
            f"{where} holds only zeros ({adata.n_obs} x {adata.n_vars}): there is nothing to "
            "learn from; pass the matrix (or layer=...) that holds the measured values"
        )
    if allow_zero_cells and allow_zero_genes:
        return
    rows, cols = nonzero_mask(X)
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


@doc_params(adata=doc_adata, name=doc_adata_name)
def check_spatial(
    adata: AnnData,
    *,
    spatial_key: str = "spatial",
    ndim: int | Sequence[int] = (2, 3),
    allow_degenerate: bool = True,
    fix: str | None = None,
    name: str = "adata",
) -> np.ndarray:
    """Return the spatial coordinates ``adata.obsm[spatial_key]`` as a float array.

    Parameters
    ----------
    {adata}
    spatial_key
        Key of the coordinates in ``adata.obsm``.
    ndim
        Accepted number(s) of coordinate columns.
    allow_degenerate
        Accept coordinates without spread (a single point, or every point at one place);
        the entry points of methods that use the coordinates pass ``False``.
    fix
        Another way out to add to the message when the key is missing (e.g. ``"or
        spatial_key=None to run without them"``).
    {name}

    Returns
    -------
    ``(n_obs, d)`` float64 array (the stored array itself when it already is one).

    Raises
    ------
    MissingKeyError
        The key is absent.
    InputError
        The coordinates are not numeric, have the wrong number of columns, are not finite,
        or (with ``allow_degenerate=False``) have no spread.
    """
    allowed = (ndim,) if isinstance(ndim, int | np.integer) else tuple(ndim)
    where = f"{name}.obsm[{spatial_key!r}]"
    if spatial_key not in adata.obsm:
        raise MissingKeyError(
            f"{where} is missing: spatial coordinates are required; store them as an "
            f"(n_obs, 2) array in {where} or pass spatial_key=... "
            f"({_keys_hint(adata.obsm.keys())})" + (f" {fix}" if fix else "")
        )
    coords = check_coordinates(adata.obsm[spatial_key], name=where, ndim=allowed)
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        raise NonFiniteError(
            f"{where} has NaN or infinite coordinates for {int(bad.sum())} of {adata.n_obs} "
            f"cells (e.g. {_shown(adata.obs_names[bad])}): drop those cells, e.g. "
            f"adata = adata[np.isfinite(adata.obsm[{spatial_key!r}]).all(axis=1)].copy()"
        )
    if not allow_degenerate:
        check_spread(coords, name=where)
    return coords


def check_spread(coords: np.ndarray, *, name: str = "coords") -> None:
    """Raise :class:`InputError` unless finite ``coords`` hold more than one distinct point
    (a spread above zero along some axis): distances, neighbours and transforms need it."""
    n = coords.shape[0]
    if n < 2:
        raise InputError(
            f"{name} holds {n} point(s): spatial methods need at least 2 observations at "
            "distinct positions; pass data with more spots or cells"
        )
    spread = np.ptp(coords, axis=0)
    if not np.any(spread > 0):
        raise InputError(
            f"{name} puts all {n} observations at the same point {tuple(coords[0].tolist())}: "
            "the coordinates carry no spatial information; store the real positions there "
            "or pass the spatial_key=... that holds them"
        )


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
        expected = "one or more" if not allowed else " or ".join(str(d) for d in allowed)
        raise InputError(
            f"{name} has shape {coords.shape}, but {expected} coordinate columns are required: "
            f"store an (n_obs, {expected if allowed else 2}) array of x, y[, z] coordinates"
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
