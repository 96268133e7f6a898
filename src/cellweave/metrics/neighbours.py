"""kNN lists and graphs of an embedding, and the graph-connectivity score built on them."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from ..errors import EmptyDataError, InputError
from ..graph import nearest_neighbors
from .inputs import embedding_array, label_codes

__all__ = [
    "NEIGHBOR_METHODS",
    "graph_connectivity",
    "graph_connectivity_from_codes",
    "graph_from_knn",
    "knn_graph",
    "knn_lists",
    "scib_neighbors",
]


def knn_lists(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of the ``k`` nearest neighbours of each row, self excluded.

    ``k`` is cut to ``n - 1``. Exact, through sklearn (as scib's neighbour lists), so that
    the scores do not move with the backend; with duplicated points the farthest neighbour
    is dropped where the row itself is missing from its list.
    """
    n = x.shape[0]
    if n < 2:
        raise EmptyDataError("a kNN graph needs at least 2 observations; pass more cells")
    return nearest_neighbors(x, min(k, n - 1), include_self=False, backend="sklearn")


def knn_graph(embedding: Any, *, n_neighbors: int = 15) -> sparse.csr_matrix:
    """Symmetric binary kNN graph (CSR): an edge wherever either cell is a neighbour of the other.

    This is the sparsity pattern of scanpy's ``connectivities`` for the same ``n_neighbors``
    (scanpy counts the cell itself, so use ``n_neighbors - 1`` here to match it exactly).
    """
    x = embedding_array(embedding)
    _, idx = knn_lists(x, n_neighbors)
    return graph_from_knn(idx)


def graph_from_knn(idx: np.ndarray) -> sparse.csr_matrix:
    n, k = idx.shape
    rows = np.repeat(np.arange(n), k)
    g = sparse.csr_matrix((np.ones(n * k), (rows, idx.ravel())), shape=(n, n))
    g = ((g + g.T) > 0).astype(np.float64)
    return sparse.csr_matrix(g)


def graph_connectivity(embedding_or_graph: Any, labels: Any, *, n_neighbors: int = 15) -> float:
    """Graph connectivity (scib): how well each cell type stays connected in the kNN graph.

    Parameters
    ----------
    embedding_or_graph
        ``(n_cells, n_dims)`` embedding (a symmetric kNN graph with ``n_neighbors`` is built)
        or a precomputed ``(n_cells, n_cells)`` sparse graph such as
        ``adata.obsp["connectivities"]``.
    labels
        Cell-type label per cell.
    n_neighbors
        Neighbours per cell when building the graph.

    Returns
    -------
    Mean over labels of (cells in the label's largest connected component) / (cells of the
    label), in (0, 1]; 1 when every label forms one connected piece.
    """
    if sparse.issparse(embedding_or_graph):
        g = sparse.csr_matrix(embedding_or_graph)
        if g.shape[0] != g.shape[1]:
            raise InputError(
                f"a sparse input must be a square (n_cells, n_cells) graph, got shape "
                f"{g.shape}; pass a dense embedding or adata.obsp['connectivities']"
            )
    else:
        g = knn_graph(embedding_or_graph, n_neighbors=n_neighbors)
    lab, n_lab = label_codes(labels, "labels", g.shape[0])
    return graph_connectivity_from_codes(g, lab, n_lab)


def graph_connectivity_from_codes(g: sparse.csr_matrix, lab: np.ndarray, n_lab: int) -> float:
    fractions = []
    for c in range(n_lab):
        idx = np.flatnonzero(lab == c)
        sub = g[idx][:, idx]
        _, comp = connected_components(sub, directed=True, connection="strong")
        fractions.append(np.bincount(comp).max() / idx.size)
    return float(np.mean(fractions))


#: Neighbour searches of :func:`scib_neighbors`.
NEIGHBOR_METHODS = ("pynndescent", "exact")


def scib_neighbors(
    embedding: Any, *, n_neighbors: int = 90, method: str = "exact"
) -> tuple[np.ndarray, np.ndarray]:
    """kNN lists that include each cell itself first, as scib-metrics' neighbour results.

    ``method="exact"``: sklearn's exact search. ``"pynndescent"``: the approximate search of
    scib-metrics' ``Benchmarker`` (``NNDescent`` with its ``n_trees``, ``n_iters``,
    ``max_candidates=60``, ``random_state=0``, one job), so that graph-based scores (kBET
    above all) come out as Benchmarker's.

    Returns ``(distances, indices)`` of shape ``(n_cells, min(n_neighbors, n_cells))``;
    column 0 is the cell itself at distance 0.
    """
    x = embedding_array(embedding)
    n = x.shape[0]
    if method not in NEIGHBOR_METHODS:
        raise InputError(
            f"unknown neighbour search {method!r}; pass one of {', '.join(NEIGHBOR_METHODS)}"
        )
    if method == "pynndescent" and n > n_neighbors:
        return _nndescent(x, n_neighbors)
    dist, idx = knn_lists(x, max(1, n_neighbors - 1))
    self_idx = np.arange(n)[:, None]
    return (
        np.hstack([np.zeros((n, 1)), dist]).astype(np.float32),
        np.hstack([self_idx, idx]).astype(np.int64),
    )


def _nndescent(x: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """scib-metrics' ``pynndescent`` neighbour search (the parameters umap / scanpy use)."""
    from pynndescent import NNDescent

    n = x.shape[0]
    index = NNDescent(
        np.asarray(x, dtype=np.float32),
        n_neighbors=n_neighbors,
        random_state=0,
        low_memory=True,
        n_jobs=1,
        compressed=False,
        n_trees=min(64, 5 + round(n**0.5 / 20.0)),
        n_iters=max(5, round(float(np.log2(n)))),
        max_candidates=60,
    )
    idx, dist = index.neighbor_graph
    return np.asarray(dist, dtype=np.float32), np.asarray(idx, dtype=np.int64)
