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

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
from scipy.spatial import KDTree

from .errors import InputError
from .validate import check_coordinates, check_spatial

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

__all__ = [
    "GridInfo",
    "detect_grid",
    "graph_rings",
    "grid_rings",
    "knn_graph",
    "neighbor_rings",
    "radius_graph",
    "ring_weights",
    "spatial_neighbors",
    "visium_array_to_xy",
]

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
#: ``tol`` must stay below sqrt(2) - 1, or a square lattice's diagonals join the first ring.
_MAX_TOL = 0.4
_METHODS = ("auto", "grid", "knn", "radius")
_GRIDS = ("auto", "square", "hex")


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


# ----------------------------------------------------------------------------- validation


def _as_coords(coords, *, name: str = "coords") -> np.ndarray:
    """Return ``coords`` as a finite float64 ``(n_obs, n_dims)`` array or raise."""
    return check_coordinates(coords, name=name, allow_nonfinite=False)


def _check_int(value, *, name: str, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int in ``[low, high]`` or raise :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name} must be an integer, got {value!r}; pass e.g. {name}={low}")
    if value < low or (high is not None and value > high):
        limits = f">= {low}" if high is None else f"between {low} and {high}"
        raise InputError(f"{name}={value} is out of range; pass an integer {limits}")
    return int(value)


def _check_positive(value, *, name: str) -> float:
    """Return ``value`` as a positive finite float or raise :class:`InputError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number) or number <= 0:
        raise InputError(f"{name} must be a positive number, got {value!r}; pass e.g. {name}=1.5")
    return number


def _check_choice(value, *, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise InputError(f"{name}={value!r} is not supported; pass one of {options}")
    return value


def _check_tol(tol) -> float:
    tol = _check_positive(tol, name="tol")
    if tol >= _MAX_TOL:
        raise InputError(
            f"tol={tol} is too large (diagonal neighbours would count as lattice neighbours); "
            f"pass tol < {_MAX_TOL}, e.g. tol=0.25"
        )
    return tol


# ----------------------------------------------------------------------------- sparse helpers


def _adjacency(rows: np.ndarray, cols: np.ndarray, n: int) -> sp.csr_matrix:
    """Symmetric binary CSR adjacency (float64 ones) with the edges ``rows[k] -- cols[k]``."""
    r = np.concatenate([rows, cols])
    c = np.concatenate([cols, rows])
    adj = sp.csr_matrix((np.ones(r.size, dtype=np.float64), (r, c)), shape=(n, n))
    adj.sum_duplicates()
    adj.data[:] = 1.0
    adj.sort_indices()
    return adj


def _edge_distances(pattern: sp.csr_matrix, coords: np.ndarray) -> sp.csr_matrix:
    """Euclidean distances on the sparsity pattern of ``pattern`` (explicit zeros are kept)."""
    pattern = pattern.tocsr()
    rows = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
    dist = np.linalg.norm(coords[rows] - coords[pattern.indices], axis=1)
    return sp.csr_matrix((dist, pattern.indices.copy(), pattern.indptr.copy()), shape=pattern.shape)


def _binary(matrix: sp.csr_matrix, dtype=np.float64) -> sp.csr_matrix:
    """Copy of ``matrix`` with every stored entry set to 1."""
    out = matrix.astype(dtype, copy=True)
    out.data[:] = 1
    return out


# ----------------------------------------------------------------------------- kNN and radius


def knn_graph(coords, *, n_neighbors: int = 6) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """k-nearest-neighbour graph of points in any dimension.

    Parameters
    ----------
    coords
        ``(n_obs, n_dims)`` coordinates (2-D or 3-D).
    n_neighbors
        Neighbours per point, excluding the point itself; must be ``< n_obs``.

    Returns
    -------
    connectivities
        Symmetric binary CSR (``1.0`` where ``j`` is among the ``n_neighbors`` nearest of ``i``
        *or* vice versa), so every degree is ``>= n_neighbors``; no self-loops.
    distances
        Euclidean distances on the same sparsity pattern.
    """
    coords = _as_coords(coords)
    n = coords.shape[0]
    n_neighbors = _check_int(n_neighbors, name="n_neighbors", low=1)
    if n_neighbors >= n:
        raise InputError(
            f"n_neighbors={n_neighbors} needs more than {n} observations; "
            f"pass n_neighbors <= {n - 1}"
        )
    _, idx = KDTree(coords).query(coords, k=n_neighbors + 1, workers=-1)
    keep = idx != np.arange(n)[:, None]
    # With duplicate points the query may not return the point itself: drop the farthest.
    keep[keep.all(axis=1), -1] = False
    rows = np.repeat(np.arange(n), n_neighbors)
    conn = _adjacency(rows, idx[keep], n)
    return conn, _edge_distances(conn, coords)


def _radius_adjacency(coords: np.ndarray, radius: float) -> sp.csr_matrix:
    pairs = KDTree(coords).query_pairs(r=radius, output_type="ndarray")
    return _adjacency(pairs[:, 0], pairs[:, 1], coords.shape[0])


def radius_graph(coords, *, radius: float) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Graph joining every pair of points at Euclidean distance ``<= radius``.

    Parameters
    ----------
    coords
        ``(n_obs, n_dims)`` coordinates (2-D or 3-D).
    radius
        Positive distance threshold, in the units of ``coords``.

    Returns
    -------
    connectivities
        Symmetric binary CSR, no self-loops (isolated points have empty rows).
    distances
        Euclidean distances on the same sparsity pattern.
    """
    coords = _as_coords(coords)
    radius = _check_positive(radius, name="radius")
    conn = _radius_adjacency(coords, radius)
    return conn, _edge_distances(conn, coords)


# ----------------------------------------------------------------------------- lattices


def _lattice_bonds(coords: np.ndarray, tol: float):
    """Spacing estimate and the near-spacing bonds among the 6 nearest neighbours.

    Returns ``(spacing, dist, idx, band)`` where ``band`` marks the neighbours whose distance
    is within ``(1 ± tol) * spacing``, or ``None`` when no positive distance exists.
    """
    k = min(7, coords.shape[0])
    dist, idx = KDTree(coords).query(coords, k=k, workers=-1)
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
    return _radius_adjacency(coords, (1 + tol) * info.spacing)


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


def graph_rings(adjacency, *, max_order: int = 2) -> sp.csr_matrix:
    """Hop-distance rings of a graph: entry ``(i, j) = k`` when ``j`` is exactly ``k`` hops
    from ``i`` (``1 <= k <= max_order``).

    Computed with sparse products of the reachability pattern (breadth-first by levels), so
    memory grows with the number of pairs within ``max_order`` hops, never with ``n_obs**2``.

    Parameters
    ----------
    adjacency
        Square sparse (or dense) matrix; every stored non-zero off-diagonal entry is an edge
        ``i -> j``. A symmetric adjacency gives symmetric rings.
    max_order
        Largest hop distance kept, ``1 <= max_order <= 127``.

    Returns
    -------
    CSR of dtype int8, no diagonal.
    """
    max_order = _check_int(max_order, name="max_order", low=1, high=127)
    adj = sp.csr_matrix(adjacency, copy=True)  # never modify the caller's matrix
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise InputError(f"adjacency has shape {adj.shape}; pass a square (n_obs, n_obs) matrix")
    adj.eliminate_zeros()
    n = adj.shape[0]
    step = _binary(adj + sp.eye(n, format="csr"), dtype=np.float32)
    reached = sp.eye(n, format="csr", dtype=np.float32)
    order = sp.csr_matrix((n, n), dtype=np.int8)
    for k in range(1, max_order + 1):
        grown = _binary(reached @ step, dtype=np.float32)
        ring = grown - reached  # grown contains reached: entries are 0 or 1
        ring.eliminate_zeros()
        if ring.nnz == 0:
            break
        order = order + _binary(ring, dtype=np.int8) * np.int8(k)
        reached = grown
    order = sp.csr_matrix(order, dtype=np.int8)
    order.sort_indices()
    return order


def ring_weights(
    order_matrix,
    *,
    weights: Sequence[float] = (1.0, 0.5),
    normalize: Literal["row", "sym"] | None = "row",
) -> sp.csr_matrix:
    """Turn a ring-order matrix into a weighted adjacency (order-``k`` entries get
    ``weights[k - 1]``), e.g. for a spatial smoothness loss.

    Parameters
    ----------
    order_matrix
        Sparse int matrix from :func:`grid_rings`, :func:`graph_rings` or
        ``adata.obsp['spatial_order']``.
    weights
        One non-negative weight per ring order; rings beyond ``len(weights)`` are an error.
    normalize
        ``"row"``: rows sum to 1 (a weighted mean over neighbours; no longer symmetric);
        ``"sym"``: ``D^-1/2 W D^-1/2`` (stays symmetric); ``None``: raw weights. Rows without
        neighbours stay zero.

    Returns
    -------
    CSR float64 with the sparsity pattern of ``order_matrix`` (zero weights are dropped).
    """
    order = sp.csr_matrix(order_matrix, copy=True)  # never modify the caller's matrix
    order.eliminate_zeros()
    table = np.asarray(weights, dtype=np.float64)
    if table.ndim != 1 or table.size == 0 or not np.isfinite(table).all() or (table < 0).any():
        raise InputError(
            f"weights={weights!r} must be a non-empty sequence of non-negative numbers, one per "
            "ring order; pass e.g. weights=(1.0, 0.5)"
        )
    levels = order.data.astype(np.int64)
    if order.nnz and (levels.min() < 1 or levels.max() > table.size):
        raise InputError(
            f"order_matrix holds ring orders {levels.min()}..{levels.max()} but "
            f"{table.size} weights were given; pass one weight per ring order"
        )
    _check_choice(normalize, name="normalize", choices=("row", "sym", None))
    out = sp.csr_matrix((table[levels - 1], order.indices, order.indptr), shape=order.shape)
    out.eliminate_zeros()
    if normalize is None:
        return out
    degree = np.asarray(out.sum(axis=1)).ravel()
    inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    if normalize == "row":
        return sp.csr_matrix(sp.diags(inv) @ out)
    root = np.sqrt(inv)
    return sp.csr_matrix(sp.diags(root) @ out @ sp.diags(root))


# ----------------------------------------------------------------------------- AnnData


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
    coords = _as_coords(
        check_spatial(adata, spatial_key=spatial_key), name=f"adata.obsm[{spatial_key!r}]"
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
        return _radius_adjacency(coords, radius), {"method": "radius", "radius": radius}
    return knn_graph(coords, n_neighbors=n_neighbors)[0], {
        "method": "knn",
        "n_neighbors": n_neighbors,
    }
