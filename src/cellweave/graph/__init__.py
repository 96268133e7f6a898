"""Spatial neighbour graphs: kNN, radius, and lattice rings (squidpy-style).

Two layers:

* pure-array functions on an ``(n_obs, n_dims)`` coordinate array: :func:`knn_graph`,
  :func:`radius_graph`, :func:`detect_grid`, :func:`grid_rings`, :func:`graph_rings` and
  :func:`ring_weights`;
* the AnnData entry point :func:`spatial_neighbors`, which writes
  ``obsp['{key}_connectivities']``, ``obsp['{key}_distances']``, ``obsp['{key}_order']`` and
  ``uns['{key}_neighbors']``.

Everything is sparse (CSR) and built from k-d tree queries and sparse products, never from an
``n x n`` dense matrix.

Lattices are detected from the geometry of the coordinates, so the coordinates must be
*isotropic* (pixels, µm, or legacy-ST array units where neighbours sit at distance ~1).
Visium ``(array_row, array_col)`` indices are not: there the hexagonal neighbours sit at
``(0, ±2)`` and ``(±1, ±1)``, which geometrically is a square lattice rotated by 45°.
:func:`detect_grid` warns when it sees that layout; convert the indices with
:func:`visium_array_to_xy` (or use the pixel coordinates in ``obsm['spatial']``).
"""

from __future__ import annotations

from .knn import knn_graph, nearest_neighbors, radius_graph
from .lattice import GridInfo, detect_grid, grid_rings, visium_array_to_xy
from .neighbors import neighbor_rings, spatial_neighbors
from .rings import graph_rings, ring_weights

__all__ = [
    "GridInfo",
    "detect_grid",
    "graph_rings",
    "grid_rings",
    "knn_graph",
    "nearest_neighbors",
    "neighbor_rings",
    "radius_graph",
    "ring_weights",
    "spatial_neighbors",
    "visium_array_to_xy",
]
