"""Which gene to show by default: a spatially structured one, not a housekeeping or blood
gene (haemoglobin varies most in many tissues and shows nothing of their structure)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from scipy import sparse

from ..errors import InputError
from ..validate import check_spatial

__all__ = ["UNINFORMATIVE", "informative_gene", "morans_i"]

#: Mitochondrial, haemoglobin and ribosomal-protein genes (human or mouse spelling).
UNINFORMATIVE = re.compile(r"^(mt-|hb[abdegmqz]\d*(-|$)|rp[sl]\d+[a-z]?\d*$)", re.IGNORECASE)


def morans_i(values: np.ndarray, coords: np.ndarray, *, n_neighbors: int = 6) -> np.ndarray:
    """Moran's I of each column of ``values`` on the ``n_neighbors``-nearest-spot graph
    (row-normalized weights): near 1 for smooth spatial patterns, near 0 for noise."""
    from ..graph import nearest_neighbors

    values = values.toarray() if sparse.issparse(values) else np.asarray(values, dtype=float)
    k = min(n_neighbors, len(coords) - 1)
    _, idx = nearest_neighbors(np.asarray(coords, dtype=float), k, include_self=False)
    z = values - values.mean(axis=0)
    lagged = z[idx].mean(axis=1)  # row-normalized neighbour average
    denom = (z * z).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (z * lagged).sum(axis=0) / denom
    return np.where(denom > 0, score, -np.inf)


def informative_gene(
    adata: AnnData,
    *,
    layer: str | None = None,
    spatial_key: str = "spatial",
    genes: Sequence[str] | None = None,
    max_spots: int = 5000,
) -> str:
    """The gene of ``genes`` (default: every gene) with the highest spatial autocorrelation
    (:func:`morans_i`) in ``layer``, among those that are not mitochondrial, haemoglobin or
    ribosomal (:data:`UNINFORMATIVE`; used only when every gene is one of those).

    ``max_spots`` evenly spaced spots are scored, to stay quick on large sections."""
    names = list(adata.var_names if genes is None else genes)
    if not names:
        raise InputError("no gene to choose from: pass at least one gene")
    kept = [g for g in names if not UNINFORMATIVE.match(str(g))] or names
    coords = check_spatial(adata, spatial_key=spatial_key)[:, :2]
    rows = np.linspace(0, adata.n_obs - 1, min(adata.n_obs, max_spots)).astype(int)
    matrix = adata.X if layer is None else adata.layers[layer]
    columns = adata.var_names.get_indexer(kept)
    values = matrix[rows][:, columns]
    if len(rows) < 3:
        return str(kept[0])
    return str(kept[int(np.argmax(morans_i(values, coords[rows])))])
