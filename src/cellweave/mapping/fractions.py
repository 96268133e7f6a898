"""Cell-type fractions per spot and the most likely location of every cell, from a mapping
(:func:`cell_type_fractions`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from ..errors import InputError
from ..validate import check_labels, check_obs_key
from .result import Mapping

__all__ = ["LOCATION_NOTE", "cell_type_fractions"]

#: What ``adata_sc.obs["mapped_probability"]`` is, written to ``adata_sc.uns["mapped_location"]``.
LOCATION_NOTE = (
    "mapped_probability is the share of the cell's mass at its top spot (mapped_spot): "
    "plan[cell, mapped_spot] / plan[cell, :].sum(). It is not a confidence: a cell spread "
    "over many similar spots has a small share (about 1 / the number of such spots) even when "
    "its region is certain."
)


def _check_cells(mapping: Mapping, adata_sc: AnnData) -> None:
    if adata_sc.n_obs != mapping.n_cells or not adata_sc.obs_names.equals(mapping.cell_names):
        raise InputError(
            f"adata_sc ({adata_sc.n_obs} cells) is not the reference the mapping was computed "
            f"on ({mapping.n_cells} cells, same names and order required): pass that reference"
        )


def _check_spots(mapping: Mapping, adata_sp: AnnData) -> None:
    if adata_sp.n_obs != mapping.n_spots or not adata_sp.obs_names.equals(mapping.spot_names):
        raise InputError(
            f"adata_sp ({adata_sp.n_obs} spots) is not the spatial data the mapping was "
            f"computed on ({mapping.n_spots} spots): pass that data set"
        )


def cell_type_fractions(
    mapping: Mapping | None,
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    cell_type_key: str,
    key_added: str = "cell_type_fractions",
    spatial_key: str = "spatial",
) -> pd.DataFrame:
    """Per-spot cell-type fractions and per-cell most likely location, from a mapping.

    Writes ``adata_sp.obsm[key_added]`` (DataFrame spots x types, rows sum to 1) and, in
    ``adata_sc.obs``, ``mapped_spot`` (the spot holding the largest share of the cell's
    mass) and ``mapped_probability``, plus ``adata_sc.obsm["spatial_mapped"]`` (that spot's
    coordinates; NaN for unmapped cells) when ``adata_sp.obsm[spatial_key]`` exists, and
    ``adata_sc.uns["mapped_location"]`` (what the columns mean: :data:`LOCATION_NOTE`).

    ``mapped_probability`` is the **share of the cell's mass at its top spot**
    (``plan[cell, spot] / plan[cell].sum()``), not a confidence: a cell spread evenly over
    25 similar spots has 0.04 there however sure its region is. The name is kept for
    existing code; read it as a mass share.

    The fractions are only as good as the mapping: compute it with
    ``map_cells(adata_sc, adata_sp, cell_type_key=...)`` (``method="auto"`` then runs
    :data:`~cellweave.mapping.methods.FRACTIONS_METHOD`, the measured best for fractions,
    and writes them too) rather than with the gene-prediction default.

    Parameters
    ----------
    mapping
        The :class:`Mapping` (``None``: the one stored in ``adata_sp.uns["mapping"]``).
    adata_sc, adata_sp
        The data the mapping was computed on.
    cell_type_key
        Column of ``adata_sc.obs`` with the cell types.
    key_added
        Key of the fractions in ``adata_sp.obsm``.
    spatial_key
        Key of the spot coordinates.

    Returns
    -------
    The fractions DataFrame.
    """
    labels = check_obs_key(adata_sc, cell_type_key, name="adata_sc")
    check_labels(labels, where=f"adata_sc.obs[{cell_type_key!r}]", fix="pass another column")
    mapping = Mapping.from_adata(adata_sp) if mapping is None else mapping
    _check_cells(mapping, adata_sc)
    _check_spots(mapping, adata_sp)
    fractions = mapping.cell_type_fractions(labels.to_numpy())
    fractions.index = adata_sp.obs_names
    adata_sp.obsm[key_added] = fractions
    coords = (
        np.asarray(adata_sp.obsm[spatial_key], dtype=np.float64)
        if spatial_key in adata_sp.obsm
        else None
    )
    location = mapping.cell_location(coords)
    adata_sc.obs["mapped_spot"] = location["spot"].to_numpy()
    adata_sc.obs["mapped_probability"] = location["probability"].to_numpy()
    adata_sc.uns["mapped_location"] = {
        "mapped_spot": "the spot holding the largest share of the cell's mass",
        "mapped_probability": LOCATION_NOTE,
        "method": mapping.method,
    }
    if coords is not None:
        adata_sc.obsm["spatial_mapped"] = location.drop(columns=["spot", "probability"]).to_numpy()
    return fractions
