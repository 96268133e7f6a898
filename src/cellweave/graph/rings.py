"""Hop-distance rings of a graph and their weighting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ._common import _binary, _check_choice, _check_int

__all__ = ["graph_rings", "ring_weights"]


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
