"""Pseudo-spots pooled from real single cells, with known cell-type fractions.

:func:`pseudo_spots` lays spots out on the simulated tissue of :mod:`.tissue` (a lattice
cut into smooth, irregular domains), gives every domain its own cell-type mixture, smooths
the mixtures across domain borders so that fractions change gradually, and fills each spot
with real cells of the drawn types; their counts are summed and thinned to a spot depth.
:func:`split_reference` splits labelled cells into a reference and a pool for the spots,
stratified by type, so that no reference cell is also inside a spot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import EmptyDataError, InputError
from ..graph import nearest_neighbors
from ..validate import check_counts, check_labels, check_layer, check_obs_key, check_seed
from ._counts import thin_counts
from .spatial import GRIDS, _check_int, _check_real
from .tissue import _assign_domains, _spot_grid

__all__ = ["pseudo_spots", "split_reference"]

#: Neighbours (a spot's first two hex rings and itself) over which mixtures are smoothed.
_SMOOTH_NEIGHBOURS = 19


def split_reference(
    adata: AnnData, cell_type_key: str, *, fraction: float = 0.5, random_state: int = 0
) -> tuple[AnnData, AnnData]:
    """Split labelled cells into a reference and the rest, stratified by cell type.

    Every type keeps about ``fraction`` of its cells in the reference and at least one cell
    on each side when it has two or more (a type with a single cell goes to the reference);
    cells without a label go to neither part. Both parts keep the input's cell order.

    Parameters
    ----------
    adata
        Cells x genes with ``obs[cell_type_key]``.
    cell_type_key
        Column of ``adata.obs`` with the cell types (at least 2).
    fraction
        Share of each type's cells in the reference, in (0, 1).
    random_state
        Seed; the same seed gives the same split.

    Returns
    -------
    ``(reference, rest)``: two new AnnData objects (copies).
    """
    labels = _checked_labels(adata, cell_type_key)
    fraction = _check_real("fraction", fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    rng = np.random.default_rng(check_seed(random_state))
    in_ref = np.zeros(adata.n_obs, dtype=bool)
    known = labels.notna().to_numpy()
    codes = pd.Categorical(labels.astype(str).where(known)).codes
    for k in range(codes.max() + 1):
        members = rng.permutation(np.flatnonzero(codes == k))
        n_ref = round(fraction * members.size)
        n_ref = min(max(n_ref, 1), max(members.size - 1, 1))
        in_ref[members[:n_ref]] = True
    return adata[in_ref].copy(), adata[known & ~in_ref].copy()


def pseudo_spots(
    adata: AnnData,
    *,
    cell_type_key: str,
    n_spots: int = 500,
    cells_per_spot: tuple[int, int] = (2, 10),
    n_domains: int = 5,
    depth: float | None = None,
    grid: str = "hex",
    concentration: float = 1.0,
    smoothing: float = 1.0,
    layer: str | None = None,
    random_state: int = 0,
) -> AnnData:
    """Spots pooled from real single cells on a simulated tissue, with their true fractions.

    Spots lie on the tissue of :func:`~cellweave.sim.simulate_spatial` (a lattice with unit
    spacing cut into ``n_domains`` smooth domains). Each domain draws a cell-type mixture
    from ``Dirichlet(concentration)``; a spot's mixture is the Gaussian-weighted mean
    (bandwidth ``smoothing``) of its neighbours' domain mixtures, so fractions change
    gradually across borders. A spot holds a uniform number of cells in ``cells_per_spot``,
    their types multinomial from its mixture, each a real cell of that type drawn without
    replacement (a type's cells are reused only once all of them are in spots). Its counts
    are the sum of its cells' counts, binomially thinned to ``depth`` expected counts.

    Parameters
    ----------
    adata
        Labelled single cells x genes with raw counts in ``X`` (or ``layers[layer]``), e.g.
        the ``rest`` of :func:`split_reference`. Cells without a label are not used.
    cell_type_key
        Column of ``adata.obs`` with the cell types (at least 2).
    n_spots
        Number of spots.
    cells_per_spot
        ``(low, high)``: each spot holds ``low`` to ``high`` cells (inclusive, uniform).
    n_domains
        Number of tissue domains, each with its own mixture (at most ``n_spots``).
    depth
        Expected counts per spot after thinning (each pooled count kept with probability
        ``min(1, depth / pooled total)``); ``None`` keeps the pooled counts.
    grid
        Spot layout: ``"hex"`` (Visium-like), ``"square"`` or ``"random"``.
    concentration
        Dirichlet concentration of the domain mixtures (small: few types per domain).
    smoothing
        Bandwidth, in spot spacings, over which mixtures are blended (0: sharp borders).
    layer
        Layer of ``adata`` with the counts instead of ``X``.
    random_state
        Seed; the same seed gives the same spots.

    Returns
    -------
    Spots x genes AnnData: counts (CSR, float32) in ``X``, ``obsm["spatial"]``,
    ``obsm["true_fractions"]`` (DataFrame spots x types, the cell-number fractions, the key
    of :func:`~cellweave.sim.simulate_spatial`), ``obs["n_cells"]``, ``obs["domain"]``,
    ``obs["pooled_counts"]`` (before thinning) and ``uns["sim"]`` (``params``, the domain
    mixtures and ``cells``: every pooled cell's name, spot and type).
    """
    labels = _checked_labels(adata, cell_type_key)
    params = _check_params(
        n_spots, cells_per_spot, n_domains, depth, grid, concentration, smoothing
    )
    params["random_state"] = check_seed(random_state)
    X = adata.X if layer is None else check_layer(adata, layer, name="adata")
    check_counts(X, name="adata.X" if layer is None else f"adata.layers[{layer!r}]")
    rng_tissue, rng_cells, rng_depth = np.random.default_rng(params["random_state"]).spawn(3)
    known = labels.notna().to_numpy()
    types = pd.Index(sorted(pd.unique(labels[known].astype(str))))
    codes = np.full(adata.n_obs, -1)
    codes[known] = types.get_indexer(labels[known].astype(str))

    coords = _spot_grid(params["n_spots"], params["grid"], rng_tissue)
    domain = _assign_domains(coords, params["n_domains"], rng_tissue)
    composition = rng_tissue.dirichlet(np.full(len(types), concentration), params["n_domains"])
    mixture = _smooth(coords, composition[domain], params["smoothing"])
    low, high = params["cells_per_spot"]
    n_cells = rng_cells.integers(low, high + 1, size=params["n_spots"])
    type_counts = rng_cells.multinomial(n_cells, mixture)
    cell_spot, cell = _draw_cells(type_counts, codes, rng_cells)
    membership = sp.csr_matrix(
        (np.ones(cell.size), (cell_spot, cell)), shape=(params["n_spots"], adata.n_obs)
    )
    pooled = sp.csr_matrix(membership @ sp.csr_matrix(X, dtype=np.float64))
    totals = np.asarray(pooled.sum(axis=1)).ravel()
    counts = thin_counts(pooled, params["depth"], rng_depth, totals=totals)
    spots = pd.Index([f"spot_{i:04d}" for i in range(params["n_spots"])])
    domains = [f"domain_{d}" for d in range(params["n_domains"])]
    obs = pd.DataFrame(
        {
            "n_cells": n_cells.astype(np.int64),
            "domain": pd.Categorical.from_codes(domain, categories=domains),
            "pooled_counts": totals,
        },
        index=spots,
    )
    out = AnnData(X=counts, obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
    out.obsm["spatial"] = coords
    out.obsm["true_fractions"] = pd.DataFrame(
        type_counts / n_cells[:, None], index=spots, columns=types
    )
    out.uns["sim"] = {
        "params": {**params, "cell_type_key": cell_type_key, "cells_per_spot": [low, high]},
        "domain_composition": pd.DataFrame(composition, index=domains, columns=types),
        "cells": pd.DataFrame(
            {
                "cell": np.asarray(adata.obs_names[cell], dtype=str),
                "spot": pd.Categorical.from_codes(cell_spot, categories=spots),
                "cell_type": pd.Categorical.from_codes(codes[cell], categories=types),
            }
        ),
    }
    return out


def _checked_labels(adata: Any, cell_type_key: str) -> pd.Series:
    if not isinstance(adata, AnnData):
        raise InputError(f"adata must be an AnnData, got {type(adata).__name__}; pass one")
    labels = check_obs_key(adata, cell_type_key, name="adata")
    return check_labels(
        labels, where=f"adata.obs[{cell_type_key!r}]", fix="pass a column with 2+ cell types"
    )


def _check_params(
    n_spots: Any,
    cells_per_spot: Any,
    n_domains: Any,
    depth: Any,
    grid: Any,
    concentration: Any,
    smoothing: Any,
) -> dict[str, Any]:
    """The checked scalar options of :func:`pseudo_spots` (one-line errors)."""
    p: dict[str, Any] = {"n_spots": _check_int("n_spots", n_spots, 1)}
    p["n_domains"] = _check_int("n_domains", n_domains, 1)
    if p["n_domains"] > p["n_spots"]:
        raise InputError(
            f"n_domains ({p['n_domains']}) exceeds n_spots ({p['n_spots']}); every domain needs "
            "a spot, so lower n_domains or raise n_spots"
        )
    if not isinstance(cells_per_spot, tuple | list) or len(cells_per_spot) != 2:
        raise InputError(
            f"cells_per_spot must be a pair (low, high), got {cells_per_spot!r}; pass e.g. (2, 10)"
        )
    low = _check_int("cells_per_spot[0]", cells_per_spot[0], 1)
    high = _check_int("cells_per_spot[1]", cells_per_spot[1], low)
    p["cells_per_spot"] = (low, high)
    if depth is not None:
        depth = _check_real("depth", depth, low=0.0, low_open=True, high_open=True)
    p["depth"] = depth
    if not isinstance(grid, str) or grid not in GRIDS:
        raise InputError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}; pick one")
    p["grid"] = grid
    p["concentration"] = _check_real(
        "concentration", concentration, low=0.0, low_open=True, high_open=True
    )
    p["smoothing"] = _check_real("smoothing", smoothing, low=0.0, low_open=False, high_open=True)
    return p


def _smooth(coords: np.ndarray, mixture: np.ndarray, bandwidth: float) -> np.ndarray:
    """Each spot's mixture as the Gaussian-weighted mean of its neighbours' (rows sum 1)."""
    if bandwidth == 0 or len(coords) < 2:
        return mixture
    k = min(_SMOOTH_NEIGHBOURS, len(coords))
    dist, idx = nearest_neighbors(coords, k, query=coords)
    weight = np.exp(-0.5 * (dist / bandwidth) ** 2)
    out = np.einsum("sk,skt->st", weight, mixture[idx])
    return out / out.sum(axis=1, keepdims=True)


def _draw_cells(
    type_counts: np.ndarray, codes: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Spot and cell index of every pooled cell: each type's cells in a random order,
    repeated (reshuffled) only when a type needs more cells than it has."""
    spot_of, cell_of = [], []
    for k in range(type_counts.shape[1]):
        need = type_counts[:, k]
        if need.sum() == 0:
            continue
        members = np.flatnonzero(codes == k)
        if members.size == 0:  # cannot happen: types are those with labelled cells
            raise EmptyDataError(f"no cell of type {k}")
        rounds = -(-int(need.sum()) // members.size)
        order = np.concatenate([rng.permutation(members) for _ in range(rounds)])
        spot_of.append(np.repeat(np.arange(len(need)), need))
        cell_of.append(order[: need.sum()])
    spot, cell = np.concatenate(spot_of), np.concatenate(cell_of)
    order = np.argsort(spot, kind="stable")
    return spot[order], cell[order]
