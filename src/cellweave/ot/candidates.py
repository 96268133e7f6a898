"""Candidate pairs: restrict a transport plan to the most similar (or nearest) pairs.

A dense ``n x m`` plan does not fit beyond :data:`MAX_DENSE` entries (100k cells x 50k
spots are 5e9 entries); entropic plans with a small regularization put almost no mass
outside each point's nearest counterparts, so the solvers work on candidate pairs instead
(:func:`~cellweave.ot.sparse_sinkhorn`).

- :func:`topk_similar`: the ``k`` rows of ``B`` with the largest dot product with each row of
  ``A`` (blocked, torch on CPU or CUDA).
- :func:`candidate_pairs`: cosine candidates from one side or both sides (so that balanced
  problems stay feasible), with their cost ``1 - cos``.
- :func:`nearest_pairs`: Euclidean nearest neighbours from both sides, with their squared
  distance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from ..device import check_device
from ..errors import InputError
from .costs import pair_cost, unit_rows

__all__ = ["MAX_DENSE", "candidate_pairs", "nearest_pairs", "topk_similar"]

#: Largest dense ``n x m`` problem (entries) the solvers build; beyond it they work on
#: candidate pairs (2**25 entries: 256 MB per float64 matrix).
MAX_DENSE = 2**25
# Entries of one similarity block computed at once in the candidate search.
_BLOCK_ENTRIES = 2**24


def topk_similar(
    A: np.ndarray,
    B: np.ndarray,
    *,
    k: int,
    device: str = "cpu",
    sort: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``B`` with the largest dot product with each row of ``A``.

    Computed in blocks of rows of ``A`` (at most ``2**24`` similarities at once), so memory
    stays ``O((n_A + n_B) * (d + k))``. Pass :func:`~cellweave.ot.unit_rows` of both for
    cosine similarity.

    Parameters
    ----------
    A, B
        ``(n_A, d)`` and ``(n_B, d)`` features.
    k
        Neighbours per row of ``A`` (at most ``n_B``).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or ``"mps"``
        (:func:`cellweave.device.parse_device`).
    sort
        Sort each row's neighbours by decreasing similarity (otherwise in no particular
        order, which is faster).

    Returns
    -------
    ``(index, similarity)``, both ``(n_A, k)``.
    """
    import torch

    k = int(min(k, B.shape[0]))
    dev = torch.device(check_device(device))
    Bt = torch.as_tensor(np.ascontiguousarray(B, dtype=np.float32), device=dev)
    step = max(1, _BLOCK_ENTRIES // max(1, B.shape[0]))
    index = np.empty((A.shape[0], k), dtype=np.int64)
    sims = np.empty((A.shape[0], k), dtype=np.float32)
    for start in range(0, A.shape[0], step):
        block = torch.as_tensor(
            np.ascontiguousarray(A[start : start + step], dtype=np.float32), device=dev
        )
        values, idx = torch.topk(block @ Bt.T, k, dim=1, sorted=sort)
        index[start : start + step] = idx.cpu().numpy()
        sims[start : start + step] = values.cpu().numpy()
    return index, sims


def candidate_pairs(
    A: np.ndarray,
    B: np.ndarray,
    *,
    k: int,
    sides: str = "both",
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs (row of ``A``, row of ``B``) by cosine similarity, with cost ``1 - cos``.

    Parameters
    ----------
    A, B
        ``(n, d)`` and ``(m, d)`` features (e.g. cells and spots).
    k
        Candidates per point.
    sides
        ``"spots"``: each row of ``B``'s ``k`` most similar rows of ``A`` (enough when the
        ``A`` marginal is relaxed). ``"both"``: also each row of ``A``'s ``k`` most similar
        rows of ``B``, so that every point has at least ``min(k, n)`` pairs and balanced
        problems stay feasible (one pass over the similarities, in blocks of rows of ``A``,
        merged into every ``B`` row's running best).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or ``"mps"``
        (:func:`cellweave.device.parse_device`).

    Returns
    -------
    ``(rows, cols, cost)`` sorted by row, then column.
    """
    if sides not in ("both", "spots"):
        raise InputError(f"sides must be 'both' or 'spots', got {sides!r}")
    if sides == "spots":
        idx, sims = topk_similar(unit_rows(B), unit_rows(A), k=k, device=device, sort=False)
        spots = np.repeat(np.arange(len(B)), idx.shape[1])
        cells = idx.ravel()
        order = np.lexsort((spots, cells))
        cost = 1.0 - np.clip(sims.ravel()[order].astype(np.float64), -1.0, 1.0)
        return cells[order], spots[order], cost
    return _both_sides(A, B, k=k, device=device)


def _both_sides(A, B, *, k: int, device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`candidate_pairs` with ``sides="both"``."""
    import torch

    dev = torch.device(check_device(device))
    A = torch.as_tensor(unit_rows(A), device=dev)
    B = torch.as_tensor(unit_rows(B), device=dev)
    n, m = A.shape[0], B.shape[0]
    k_spots, k_cells = int(min(k, m)), int(min(k, n))
    best_val = torch.full((k_cells, m), -torch.inf, device=dev)
    best_idx = torch.zeros((k_cells, m), dtype=torch.long, device=dev)
    cells, spots, sims = [], [], []
    step = max(1, _BLOCK_ENTRIES // max(1, m))
    for start in range(0, n, step):
        S = A[start : start + step] @ B.T  # (b, m)
        val, idx = torch.topk(S, k_spots, dim=1, sorted=False)
        cells.append(torch.arange(start, start + S.shape[0], device=dev).repeat_interleave(k_spots))
        spots.append(idx.reshape(-1))
        sims.append(val.reshape(-1))
        if S.shape[0] == n:  # one block: the spots' best cells from the transposed product
            best_val, best_idx = torch.topk(B @ A.T, k_cells, dim=1, sorted=False)
            best_val, best_idx = best_val.T, best_idx.T
            break
        cval, cidx = torch.topk(S, min(k_cells, S.shape[0]), dim=0, sorted=False)
        merged_val = torch.cat([best_val, cval])
        merged_idx = torch.cat([best_idx, cidx + start])
        best_val, pos = torch.topk(merged_val, k_cells, dim=0, sorted=False)
        best_idx = torch.gather(merged_idx, 0, pos)
    cells.append(best_idx.reshape(-1))
    spots.append(torch.arange(m, device=dev).repeat(k_cells))
    sims.append(best_val.reshape(-1))
    cells_t, spots_t = torch.cat(cells), torch.cat(spots)
    if n * m <= 4 * _BLOCK_ENTRIES:  # small: deduplicate through a dense mask (sorted output)
        mask = torch.zeros((n, m), dtype=torch.bool, device=dev)
        mask[cells_t, spots_t] = True
        pair = mask.nonzero()
        cells_t, spots_t = pair[:, 0], pair[:, 1]
        cos = (A[cells_t] * B[spots_t]).sum(dim=1).clamp(-1.0, 1.0)
    else:
        key = cells_t.to(torch.int64) * m + spots_t
        key, first = _unique_first(key)
        cells_t, spots_t, cos = key // m, key % m, torch.cat(sims)[first]
    cost = (1.0 - cos).to(torch.float64)
    return cells_t.cpu().numpy(), spots_t.cpu().numpy(), cost.cpu().numpy()


def _unique_first(key: Any) -> tuple[Any, Any]:
    """Sorted unique values of ``key`` and the position of their first occurrence."""
    import torch

    order = torch.argsort(key, stable=True)
    sorted_key = key[order]
    first = torch.ones_like(sorted_key, dtype=torch.bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    return sorted_key[first], order[first]


def nearest_pairs(
    A: np.ndarray, B: np.ndarray, *, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row of ``A``'s ``k`` nearest rows of ``B`` and each row of ``B``'s ``k`` nearest
    rows of ``A`` (Euclidean), so that both exact marginals stay feasible.

    Parameters
    ----------
    A, B
        ``(n, d)`` and ``(m, d)`` points.
    k
        Neighbours per point (at most the other side's size).

    Returns
    -------
    ``(rows, cols, cost)``: duplicate pairs merged, sorted by row then column, the cost the
    squared Euclidean distance.
    """
    from sklearn.neighbors import NearestNeighbors

    k_b, k_a = min(k, len(B)), min(k, len(A))
    _, to_b = NearestNeighbors(n_neighbors=k_b).fit(B).kneighbors(A)
    _, to_a = NearestNeighbors(n_neighbors=k_a).fit(A).kneighbors(B)
    rows = np.concatenate([np.repeat(np.arange(len(A)), k_b), to_a.ravel()])
    cols = np.concatenate([to_b.ravel(), np.repeat(np.arange(len(B)), k_a)])
    # through CSR: duplicate pairs merged, sorted by row then column
    pairs = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(len(A), len(B)))
    pairs = pairs.tocsr().tocoo()
    cost = pair_cost(A, B, pairs.row, pairs.col, metric="sqeuclidean")
    return pairs.row.astype(np.int64), pairs.col.astype(np.int64), cost
