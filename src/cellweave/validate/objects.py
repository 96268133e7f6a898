"""Composite checks of a whole AnnData or MuData."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anndata import AnnData

from ..errors import (
    EmptyDataError,
    InputError,
    MissingKeyError,
)
from ._format import _keys_hint
from .fields import check_nonempty, check_spatial, check_unique_names, get_matrix, matrix_label
from .matrix import check_counts, check_finite

__all__ = ["check_adata", "check_mudata"]


def check_adata(
    adata: Any,
    *,
    layer: str | None = None,
    require_counts: bool = False,
    spatial_key: str | None = None,
    allow_zero_genes: bool = True,
    allow_zero_cells: bool = False,
    allow_all_zero: bool = True,
    allow_degenerate: bool = True,
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
        When given, require valid coordinates in ``adata.obsm[spatial_key]`` (finite, 2-D or
        3-D; see :func:`check_spatial`).
    allow_degenerate
        With ``spatial_key``: accept coordinates without spread (``False``: more than one
        distinct point required, as every method that uses coordinates does).
    allow_zero_genes, allow_zero_cells, allow_all_zero
        See :func:`check_nonempty`; ``allow_all_zero=False`` refuses a matrix of zeros
        only (impute, align and every mosaic modality pass it).
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
        allow_all_zero=allow_all_zero,
        name=name,
    )
    where = matrix_label(name, layer)
    check_finite(X, name=where)
    if require_counts:
        check_counts(X, name=where)
    if spatial_key is not None:
        check_spatial(adata, spatial_key=spatial_key, allow_degenerate=allow_degenerate, name=name)
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
        modality may hold only the cells it measured), but not a matrix of zeros only.
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
            check_adata(
                mdata.mod[mod],
                allow_zero_cells=True,
                allow_zero_genes=True,
                allow_all_zero=False,
                name=where,
            )
        else:
            check_unique_names(mdata.mod[mod], axis="obs", name=where)
            check_unique_names(mdata.mod[mod], axis="var", name=where)
        out[mod] = mdata.mod[mod]
    return out
