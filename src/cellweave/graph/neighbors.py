"""The AnnData entry point :func:`spatial_neighbors` and the array-level :func:`neighbor_rings`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..validate import check_spatial, check_unique_names
from ._common import (
    _GRIDS,
    _METHODS,
    _as_coords,
    _binary,
    _check_choice,
    _check_int,
    _check_positive,
    _check_tol,
    _edge_distances,
)
from .knn import knn_graph, radius_adjacency
from .lattice import _lattice_adjacency, _no_lattice_error, _resolve_grid
from .rings import graph_rings

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["neighbor_rings", "spatial_neighbors"]


def spatial_neighbors(
    adata: AnnData,
    *,
    method: Literal["auto", "grid", "knn", "radius"] = "auto",
    n_neighbors: int = 6,
    radius: float | None = None,
    max_order: int = 1,
    grid: Literal["auto", "square", "hex"] = "auto",
    tol: float = 0.25,
    spatial_key: str = "spatial",
    key_added: str = "spatial",
    copy: bool = False,
) -> AnnData | None:
    """Build a spatial neighbour graph from ``adata.obsm[spatial_key]``.

    ``method="auto"`` uses lattice rings when :func:`detect_grid` finds a square or hexagonal
    lattice (spot-based arrays) or ``grid`` forces one, else a radius graph when ``radius`` is
    given, else a kNN graph (single cells, 3-D). ``max_order`` rings are hop distances in that
    base graph (lattice, kNN or radius): with ``max_order=1`` every entry is order 1.

    Parameters
    ----------
    adata
        Annotated data with coordinates in ``obsm[spatial_key]`` (isotropic units; see
        :func:`detect_grid` about Visium array indices).
    method
        ``"auto"``, ``"grid"`` (lattice rings; error when no lattice), ``"knn"`` or
        ``"radius"``.
    n_neighbors
        Neighbours per point for the kNN graph.
    radius
        Distance threshold for the radius graph (required by ``method="radius"``).
    max_order
        Largest ring order (e.g. 2 for the order-1 and order-2 rings of a smoothness loss).
    grid
        ``"auto"`` detects the lattice; ``"square"``/``"hex"`` force it.
    tol
        Relative tolerance on the lattice neighbour distance.
    spatial_key
        Key of the coordinates in ``obsm``.
    key_added
        Prefix of the written keys.
    copy
        Return a modified copy instead of writing into ``adata``.

    Raises
    ------
    InputError
        Before any work: an option out of range, duplicate cell or gene names, or
        coordinates that are missing, not finite, not 2-D/3-D or all at one point.

    Returns
    -------
    ``None`` (or the copy when ``copy=True``); writes

    * ``obsp['{key_added}_connectivities']``: symmetric binary CSR float64, 1.0 for every
      neighbour up to ``max_order`` (weight rings with :func:`ring_weights`);
    * ``obsp['{key_added}_distances']``: Euclidean distances on the same pattern;
    * ``obsp['{key_added}_order']``: CSR int8 ring order ``1..max_order`` on the same pattern;
    * ``uns['{key_added}_neighbors']``: ``connectivities_key``, ``distances_key``,
      ``order_key`` and ``params`` (``method`` used, ``spatial_key``, ``max_order``, and
      ``grid``/``spacing``/``tol``, ``n_neighbors`` or ``radius``).
    """

    method = _check_choice(method, name="method", choices=_METHODS)
    grid = _check_choice(grid, name="grid", choices=_GRIDS)
    max_order = _check_int(max_order, name="max_order", low=1, high=127)
    tol = _check_tol(tol)
    if method == "knn" or (method == "auto" and radius is None):
        n_neighbors = _check_int(n_neighbors, name="n_neighbors", low=1)
    if method == "radius" and radius is None:
        raise InputError(
            "method='radius' needs a radius; pass radius=<distance in coordinate units>"
        )
    if radius is not None:
        radius = _check_positive(radius, name="radius")
    check_unique_names(adata, axis="obs")
    check_unique_names(adata, axis="var")
    coords = _as_coords(
        check_spatial(adata, spatial_key=spatial_key, allow_degenerate=False),
        name=f"adata.obsm[{spatial_key!r}]",
    )
    order, params = neighbor_rings(
        coords,
        method=method,
        max_order=max_order,
        n_neighbors=n_neighbors,
        radius=radius,
        grid=grid,
        tol=tol,
    )
    conn = _binary(order)
    dist = _edge_distances(conn, coords)
    params.update(spatial_key=spatial_key)

    adata = adata.copy() if copy else adata
    keys = {
        "connectivities_key": f"{key_added}_connectivities",
        "distances_key": f"{key_added}_distances",
        "order_key": f"{key_added}_order",
    }
    adata.obsp[keys["connectivities_key"]] = conn
    adata.obsp[keys["distances_key"]] = dist
    adata.obsp[keys["order_key"]] = order
    adata.uns[f"{key_added}_neighbors"] = {**keys, "params": params}
    return adata if copy else None


def neighbor_rings(
    coords,
    *,
    method: str = "auto",
    max_order: int = 2,
    n_neighbors: int = 6,
    radius: float | None = None,
    grid: str = "auto",
    tol: float = 0.25,
) -> tuple[sp.csr_matrix, dict]:
    """Neighbour rings of points without an AnnData: lattice rings on ST/Visium grids,
    hop rings of a kNN (or radius) graph elsewhere.

    Returns the CSR int8 ring-order matrix (as ``obsp['spatial_order']``) and the parameters
    that describe the graph (as ``uns['spatial_neighbors']['params']``).
    """
    coords = _as_coords(coords)
    base, params = _base_graph(
        coords, method=method, n_neighbors=n_neighbors, radius=radius, grid=grid, tol=tol
    )
    params["max_order"] = max_order
    return graph_rings(base, max_order=max_order), params


def _base_graph(
    coords: np.ndarray,
    *,
    method: str,
    n_neighbors: int,
    radius: float | None,
    grid: str,
    tol: float,
) -> tuple[sp.csr_matrix, dict]:
    """Order-1 adjacency for ``method`` and the parameters that describe it."""
    if method in ("auto", "grid"):
        info = _resolve_grid(coords, grid, tol)
        if info.kind is not None:
            base = _lattice_adjacency(coords, info, tol)
            return base, {"method": "grid", "grid": info.kind, "spacing": info.spacing, "tol": tol}
        if method == "grid":
            raise _no_lattice_error(info)
    if radius is not None and method in ("auto", "radius"):
        return radius_adjacency(coords, radius), {"method": "radius", "radius": radius}
    return knn_graph(coords, n_neighbors=n_neighbors)[0], {
        "method": "knn",
        "n_neighbors": n_neighbors,
    }
