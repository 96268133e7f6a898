"""Nearest-neighbour searches and the kNN / radius graphs built on them.

:func:`nearest_neighbors` is the one place in cellweave that builds a neighbour search: a
k-d tree (``scipy.spatial.cKDTree``) for Euclidean searches in few dimensions, where it is
exact and fastest, and ``sklearn.neighbors.NearestNeighbors`` otherwise (other metrics, many
dimensions). Every caller asks it instead of building a tree itself.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ..errors import EmptyDataError, InputError
from ._common import _adjacency, _as_coords, _check_int, _check_positive, _edge_distances

__all__ = ["knn_graph", "nearest_neighbors", "radius_adjacency", "radius_graph"]

Backend = Literal["auto", "kdtree", "sklearn", "brute"]
BACKENDS = ("auto", "kdtree", "sklearn", "brute")

#: Up to this many dimensions a Euclidean search uses a k-d tree (beyond, trees lose to brute
#: force, and sklearn chooses its own algorithm).
KDTREE_MAX_DIMS = 16


def _drop_self(dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index from ``k + 1`` neighbour lists, leaving ``k`` columns.

    With duplicated points a row's own index may be missing from its list (a twin at distance
    0 took its place): the farthest neighbour is dropped instead.
    """
    n, k1 = idx.shape
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    first = np.argmax(is_self, axis=1)
    keep = np.ones_like(is_self)
    keep[np.arange(n), first] = False
    return dist[keep].reshape(n, k1 - 1), idx[keep].reshape(n, k1 - 1)


def _as_points(x) -> np.ndarray:
    """``x`` as an array, float64 unless it already holds floats (float32 stays float32)."""
    arr = np.asarray(x)
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)


def _choose_backend(backend: str, metric: str, n_dims: int, max_distance) -> str:
    if backend not in BACKENDS:
        options = ", ".join(repr(b) for b in BACKENDS)
        raise InputError(f"backend={backend!r} is not supported; pass one of {options}")
    if backend == "auto":
        tree = metric == "euclidean" and (n_dims <= KDTREE_MAX_DIMS or max_distance is not None)
        backend = "kdtree" if tree else "sklearn"
    if backend == "kdtree" and metric != "euclidean":
        raise InputError(
            f"backend='kdtree' searches Euclidean distances only, got metric={metric!r}; "
            "pass backend='sklearn' or 'auto'"
        )
    if max_distance is not None and backend != "kdtree":
        raise InputError(
            "max_distance needs the k-d tree (Euclidean distances); pass backend='kdtree' "
            "or 'auto' and metric='euclidean'"
        )
    return backend


def _search(
    data: np.ndarray,
    query: np.ndarray,
    k: int,
    metric: str,
    backend: str,
    max_distance: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    if backend == "kdtree":
        bound = np.inf if max_distance is None else float(max_distance)
        dist, idx = cKDTree(data).query(query, k=k, distance_upper_bound=bound, workers=-1)
        return dist.reshape(query.shape[0], k), idx.reshape(query.shape[0], k).astype(np.intp)
    from sklearn.neighbors import NearestNeighbors

    algorithm = "brute" if backend == "brute" or metric == "cosine" else "auto"
    nn = NearestNeighbors(n_neighbors=k, metric=metric, algorithm=algorithm).fit(data)
    return nn.kneighbors(query)


def nearest_neighbors(
    X,
    k: int,
    *,
    query=None,
    metric: str = "euclidean",
    include_self: bool = True,
    backend: Backend = "auto",
    max_distance: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of the ``k`` nearest rows of ``X``, exact.

    Parameters
    ----------
    X
        ``(n, d)`` points searched (dense array-like).
    k
        Neighbours per query point, ``1 <= k``; without ``query`` and with
        ``include_self=False`` at most ``n - 1``, else at most ``n``.
    query
        ``(m, d)`` points whose neighbours are wanted; default ``X`` itself.
    metric
        ``"euclidean"`` or any metric of ``sklearn.neighbors.NearestNeighbors`` (e.g.
        ``"cosine"``, searched by brute force).
    include_self
        Only without ``query``: keep each point in its own list (column 0 unless duplicated
        points tie with it at distance 0); ``False`` drops it (with duplicates, the farthest
        neighbour is dropped when the point itself is not in its list).
    backend
        ``"auto"``: a k-d tree (``scipy.spatial.cKDTree``) for Euclidean searches in at most
        :data:`KDTREE_MAX_DIMS` dimensions, else ``sklearn``; ``"kdtree"`` or ``"sklearn"``
        force one, ``"brute"`` sklearn's brute force (results agree up to the order of ties
        and the rounding of the distances: brute force computes them through dot products).
    max_distance
        Only neighbours within this Euclidean distance (k-d tree only): missing ones have
        distance ``inf`` and index ``len(X)``, as ``scipy.spatial.cKDTree.query``.

    Returns
    -------
    ``(distances, indices)``, each ``(m, k)``, rows sorted by increasing distance.
    """
    data = _as_points(X)
    if data.ndim != 2 or data.shape[0] == 0:
        raise EmptyDataError(
            f"X has shape {data.shape}: a neighbour search needs an (n, d) array with n >= 1"
        )
    n = data.shape[0]
    k = _check_int(k, name="k", low=1)
    drop_self = query is None and not include_self
    most = n - 1 if drop_self else n
    if k > most:
        raise InputError(
            f"k={k} neighbours asked of {n} points"
            + (" (self excluded)" if drop_self else "")
            + f"; pass k <= {most}"
        )
    points = data if query is None else _as_points(query)
    if points.ndim != 2 or points.shape[1] != data.shape[1]:
        raise InputError(
            f"query has shape {points.shape} but X has {data.shape[1]} columns; pass query "
            "points in the same space as X"
        )
    chosen = _choose_backend(backend, metric, data.shape[1], max_distance)
    dist, idx = _search(data, points, k + 1 if drop_self else k, metric, chosen, max_distance)
    return _drop_self(dist, idx) if drop_self else (dist, idx)


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
    _, idx = nearest_neighbors(coords, n_neighbors, include_self=False, backend="kdtree")
    rows = np.repeat(np.arange(n), n_neighbors)
    conn = _adjacency(rows, idx.ravel(), n)
    return conn, _edge_distances(conn, coords)


def radius_adjacency(coords: np.ndarray, radius: float) -> sp.csr_matrix:
    """Symmetric binary CSR joining the points at Euclidean distance ``<= radius``."""
    pairs = cKDTree(coords).query_pairs(r=radius, output_type="ndarray")
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
    conn = radius_adjacency(coords, radius)
    return conn, _edge_distances(conn, coords)
