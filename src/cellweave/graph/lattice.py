"""Square / hexagonal lattice detection and lattice rings (ST and Visium spot arrays)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ._common import (
    _GRIDS,
    _as_coords,
    _check_choice,
    _check_int,
    _check_positive,
    _check_tol,
)
from .knn import nearest_neighbors, radius_adjacency
from .rings import graph_rings

__all__ = ["GridInfo", "detect_grid", "grid_rings", "visium_array_to_xy"]

GridKind = Literal["square", "hex"]

#: Nearest neighbours of an interior spot on each lattice.
_COORDINATION: dict[str, int] = {"square": 4, "hex": 6}
#: Smallest number of points on which a lattice is looked for.
_MIN_GRID_POINTS = 10
#: Bond-orientational order (0..1) above which bonds are taken to be on a lattice. On a random
#: cloud of N bonds the order is ~1/sqrt(N), so small data sets need more (2/sqrt(N)).
_MIN_ORDER_PARAMETER = 0.5
#: Fraction of points whose nearest neighbour must be at the lattice spacing.
_MIN_ON_LATTICE = 0.8


@dataclass(frozen=True)
class GridInfo:
    """What :func:`detect_grid` found.

    Attributes
    ----------
    kind
        ``"square"`` (legacy ST arrays: 4 nearest neighbours), ``"hex"`` (Visium: 6 nearest
        neighbours) or ``None`` (no lattice: an irregular point cloud, or not 2-D).
    spacing
        Lattice spacing (centre-to-centre distance of neighbours) in the units of the
        coordinates; for ``kind=None`` the median nearest-neighbour distance (``nan`` when it
        cannot be computed).
    score
        Bond-orientational order parameter of the detected kind, in ``[0, 1]``: 1 on a perfect
        lattice of any rotation, near 0 on a random point cloud.
    """

    kind: GridKind | None
    spacing: float
    score: float = float("nan")


def _lattice_bonds(coords: np.ndarray, tol: float):
    """Spacing estimate and the near-spacing bonds among the 6 nearest neighbours.

    Returns ``(spacing, dist, idx, band)`` where ``band`` marks the neighbours whose distance
    is within ``(1 ± tol) * spacing``, or ``None`` when no positive distance exists.
    """
    k = min(7, coords.shape[0])
    dist, idx = nearest_neighbors(coords, k, backend="kdtree")
    dist, idx = dist[:, 1:], idx[:, 1:]
    nearest = dist[:, 0]
    positive = nearest[nearest > 0]
    if positive.size == 0:
        return None
    spacing = float(np.median(positive))
    # Refine on all near-spacing bonds: the nearest distance alone is biased low by jitter.
    for _ in range(2):
        band = (dist >= (1 - tol) * spacing) & (dist <= (1 + tol) * spacing)
        if not band.any():
            break
        spacing = float(np.median(dist[band]))
    band = (dist >= (1 - tol) * spacing) & (dist <= (1 + tol) * spacing)
    return spacing, dist, idx, band


def _orientational_order(coords: np.ndarray, idx: np.ndarray, band: np.ndarray) -> dict:
    """Global bond-orientational order ``|<exp(i m theta)>|`` for m = 4 (square), 6 (hex)."""
    rows = np.broadcast_to(np.arange(coords.shape[0])[:, None], idx.shape)
    vec = coords[idx[band]] - coords[rows[band]]
    theta = np.arctan2(vec[:, 1], vec[:, 0])
    return {kind: float(np.abs(np.exp(1j * m * theta).mean())) for kind, m in _COORDINATION.items()}


def _warn_if_visium_array(coords: np.ndarray, spacing: float) -> None:
    """Warn when a 'square lattice' is really Visium (array_row, array_col) indices."""
    integer = np.abs(coords - np.round(coords)) < 0.05
    if integer.mean() > 0.99 and abs(spacing / np.sqrt(2) - 1) < 0.05:
        warnings.warn(
            "the coordinates look like Visium (array_row, array_col) indices, whose hexagonal "
            "lattice appears as a 45°-rotated square lattice of spacing sqrt(2); pass pixel/µm "
            "coordinates or convert them with cellweave.graph.visium_array_to_xy",
            UserWarning,
            stacklevel=3,
        )


def detect_grid(coords, *, tol: float = 0.25) -> GridInfo:
    """Detect whether 2-D points lie on a square or a hexagonal lattice.

    The spacing is the median length of the bonds near the nearest-neighbour distance; the
    kind is the lattice whose bond-orientational order parameter ``|<exp(i m theta)>|``
    (``m = 4`` square, ``m = 6`` hex, ``theta`` the bond angles) is high (>= 0.5, and
    >= 2/sqrt(number of bonds) on small data), provided at least 80 % of the points have
    their nearest neighbour at the lattice spacing. This is invariant to rotation,
    translation and units, tolerates jitter up to ~10 % of the spacing and missing spots
    (holes, borders, up to about half of the spots at random), and gives ``None`` on
    irregular point clouds (single cells). A lattice must have one orientation: two
    differently rotated arrays concatenated are not detected.

    Parameters
    ----------
    coords
        ``(n_obs, n_dims)`` isotropic coordinates (pixels, µm, legacy-ST array units). Not
        Visium ``(array_row, array_col)`` indices: those are reported as a square lattice of
        spacing ``sqrt(2)`` with a warning (see :func:`visium_array_to_xy`).
    tol
        Relative tolerance on the neighbour distance, ``0 < tol < 0.4``.

    Returns
    -------
    :class:`GridInfo`; ``kind=None`` for non-2-D data, fewer than 10 points, or no lattice.
    """
    coords = _as_coords(coords)
    tol = _check_tol(tol)
    n, n_dims = coords.shape
    if n < 2:
        return GridInfo(None, float("nan"))
    found = _lattice_bonds(coords, tol)
    if found is None:
        return GridInfo(None, float("nan"))
    spacing, _, idx, band = found
    if n_dims != 2 or n < _MIN_GRID_POINTS or not band.any():
        return GridInfo(None, spacing)
    order = _orientational_order(coords, idx, band)
    kind = max(order, key=order.get)
    on_lattice = float(band[:, 0].mean())
    needed = max(_MIN_ORDER_PARAMETER, 2.0 / np.sqrt(band.sum() / 2))
    if order[kind] < needed or on_lattice < _MIN_ON_LATTICE:
        return GridInfo(None, spacing, max(order.values()))
    if kind == "square":
        _warn_if_visium_array(coords, spacing)
    return GridInfo(kind, spacing, order[kind])


def visium_array_to_xy(array_row, array_col, *, spacing: float = 1.0) -> np.ndarray:
    """Convert Visium ``(array_row, array_col)`` indices to isotropic hexagonal coordinates.

    In Visium indices a spot's neighbours are at ``(0, ±2)`` and ``(±1, ±1)``; this maps them
    to ``x = array_col * spacing / 2`` and ``y = array_row * spacing * sqrt(3) / 2``, a
    hexagonal lattice whose neighbours are all at distance ``spacing`` (100 µm on Visium).

    Returns
    -------
    ``(n_obs, 2)`` float array ``[x, y]`` (``y`` grows with the row, as in image space).
    """
    row = np.asarray(array_row)
    col = np.asarray(array_col)
    if row.shape != col.shape or row.ndim != 1:
        raise InputError(
            f"array_row {row.shape} and array_col {col.shape} must be 1-D of equal length; "
            "pass adata.obs['array_row'] and adata.obs['array_col']"
        )
    spacing = _check_positive(spacing, name="spacing")
    coords = _as_coords(np.column_stack([row, col]), name="array_row/array_col")
    if not np.array_equal(coords, np.round(coords)) or np.unique((row + col) % 2).size > 1:
        raise InputError(
            "array_row/array_col are not Visium indices (integers with array_row + array_col of "
            "one parity); pass the Visium array indices or use pixel coordinates directly"
        )
    return np.column_stack([coords[:, 1] * spacing / 2, coords[:, 0] * spacing * np.sqrt(3) / 2])


def _resolve_grid(coords: np.ndarray, grid: str, tol: float) -> GridInfo:
    """Detected (``grid="auto"``) or forced lattice, with its spacing."""
    if grid == "auto":
        return detect_grid(coords, tol=tol)
    if coords.shape[1] != 2:
        raise InputError(
            f"grid={grid!r} needs 2-D coordinates, got {coords.shape[1]}-D; use a kNN or radius "
            "graph (method='knn' or 'radius') for 3-D data"
        )
    found = _lattice_bonds(coords, tol) if coords.shape[0] > 1 else None
    if found is None:
        raise InputError(
            "cannot estimate a lattice spacing (fewer than 2 distinct points); "
            "pass at least two distinct coordinates"
        )
    return GridInfo(grid, found[0])


def _no_lattice_error(info: GridInfo) -> InputError:
    return InputError(
        f"no square or hexagonal lattice detected in the coordinates (order score "
        f"{info.score:.2f}); use a kNN graph (method='knn') or force grid='square'/'hex'"
    )


def _lattice_adjacency(coords: np.ndarray, info: GridInfo, tol: float) -> sp.csr_matrix:
    """Order-1 lattice graph: pairs within ``(1 + tol) * spacing``."""
    return radius_adjacency(coords, (1 + tol) * info.spacing)


def grid_rings(
    coords, *, max_order: int = 2, grid: str = "auto", tol: float = 0.25
) -> sp.csr_matrix:
    """Rings of lattice neighbours: entry ``(i, j) = k`` when ``j`` is in the order-``k`` ring.

    Order 1 are the lattice neighbours (distance ``<= (1 + tol) * spacing``: 4 on a square
    lattice, 6 on a hexagonal one); order ``k`` are the spots at hop distance exactly ``k`` in
    that order-1 graph (interior counts: square 4, 8, 12, ...; hex 6, 12, 18, ...). Missing
    spots (holes, borders) are simply absent, so rings route around them.

    The order-1 rule is purely metric (as in squidpy), so with jitter of ~5 % of the spacing
    or more a few square-lattice diagonals (at ``sqrt(2)`` spacings) can fall inside the
    tolerance, or true neighbours outside it; a smaller ``tol`` (e.g. 0.2) on square lattices
    trades the first error for the second.

    Parameters
    ----------
    coords
        ``(n_obs, 2)`` isotropic coordinates (see :func:`detect_grid`).
    max_order
        Largest ring order, ``1 <= max_order <= 127``.
    grid
        ``"auto"`` detects the lattice (and raises :class:`~cellweave.errors.InputError` when
        there is none); ``"square"``/``"hex"`` skip detection and only estimate the spacing.
    tol
        Relative tolerance on the neighbour distance, ``0 < tol < 0.4``.

    Returns
    -------
    Symmetric ``(n_obs, n_obs)`` CSR of dtype int8 with values in ``1..max_order``, no
    diagonal.
    """
    coords = _as_coords(coords)
    max_order = _check_int(max_order, name="max_order", low=1, high=127)
    grid = _check_choice(grid, name="grid", choices=_GRIDS)
    tol = _check_tol(tol)
    info = _resolve_grid(coords, grid, tol)
    if info.kind is None:
        raise _no_lattice_error(info)
    return graph_rings(_lattice_adjacency(coords, info, tol), max_order=max_order)
