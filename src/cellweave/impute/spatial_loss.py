"""The spatial loss of the imputation models: each spot's weighted expression difference
from its spatial neighbours, summed over genes.

For spot ``i`` with ring-weighted neighbours ``j`` (order 1 weight 1, order 2 weight 0.5 by
default, rows normalised so that every spot's weights sum to 1)::

    L_spatial = sum_i sum_j w_ij * || z_i - z_j ||^2

where ``z`` is the spot's expression on a log scale. In *gene space* ``z_i`` are the
centred log proportions of the spot (its CLR profile over genes), so the loss is literally
the squared expression difference summed over genes; in *latent space* ``z_i`` is the spot's
embedding. For a low-rank model with logits ``b + u_i V^T`` the gene-space difference is
``(u_i - u_j) Vc^T`` (``Vc``: ``V`` centred over genes), whose squared norm is
``(u_i - u_j) (Vc^T Vc) (u_i - u_j)^T``: the sum over genes costs ``O(d^2)`` per edge and
never materialises a gene vector. The loss works on edge lists (gather + scatter), so it
scales linearly with the number of spots, and minibatches keep the edges leaving the batch.

Optionally the edges are gated by expression similarity
(:func:`cellweave.impute.similarity.similarity_weights`) so that smoothing does not cross
tissue boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from torch import nn

from .. import graph as _graph
from ..errors import InputError
from .proportions import require_coords
from .similarity import Metric, gate_by_similarity

__all__ = [
    "SpatialGraph",
    "SpatialLoss",
    "build_spatial_loss",
    "ring_orders",
    "spatial_graph",
    "spatial_penalty",
]


def ring_orders(
    coords: np.ndarray, *, max_order: int, n_neighbors: int, method: str = "auto"
) -> sparse.csr_matrix:
    """Ring-order matrix of the spots (:func:`cellweave.graph.neighbor_rings`), with
    ``n_neighbors`` capped by the number of other spots; a single spot has no rings."""
    n = coords.shape[0]
    if n < 2:
        return sparse.csr_matrix((n, n), dtype=np.int8)
    order, _ = _graph.neighbor_rings(
        coords, method=method, max_order=max_order, n_neighbors=min(n_neighbors, n - 1)
    )
    return order


@dataclass(frozen=True)
class SpatialGraph:
    """Weighted directed edges ``src -> dst`` of the spatial loss.

    Attributes
    ----------
    src, dst
        ``(n_edges,)`` int64 spot indices.
    weight
        ``(n_edges,)`` float32 non-negative weights.
    n_obs
        Number of spots.
    """

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    n_obs: int

    @property
    def n_edges(self) -> int:
        return int(self.src.size)

    def to_csr(self) -> sparse.csr_matrix:
        """The weights as an ``(n_obs, n_obs)`` CSR matrix."""
        return sparse.csr_matrix(
            (self.weight.astype(np.float64), (self.src, self.dst)), shape=(self.n_obs,) * 2
        )

    @classmethod
    def from_matrix(cls, W) -> SpatialGraph:
        """Edges of a square sparse weight matrix (zeros and the diagonal dropped)."""
        coo = sparse.coo_matrix(W)
        keep = (coo.data > 0) & (coo.row != coo.col)
        return cls(
            src=coo.row[keep].astype(np.int64),
            dst=coo.col[keep].astype(np.int64),
            weight=coo.data[keep].astype(np.float32),
            n_obs=int(coo.shape[0]),
        )


def spatial_graph(
    coords,
    *,
    weights: Sequence[float] = (1.0, 0.5),
    graph: str = "auto",
    n_neighbors: int = 6,
    normalize: str | None = "row",
    similarity: Metric | None = None,
    similarity_scale: float = 1.0,
    similarity_features: np.ndarray | None = None,
    X=None,
    random_state: int = 0,
) -> SpatialGraph:
    """Ring-weighted spatial edges for the spatial loss.

    Parameters
    ----------
    coords
        ``(n_obs, 2)`` spot coordinates.
    weights
        Weight of each ring order (order 1, order 2, ...).
    graph
        ``method`` of :func:`cellweave.graph.neighbor_rings` (``"auto"``: lattice rings on
        ST/Visium grids, hop rings of a kNN graph elsewhere).
    n_neighbors
        Neighbours of the kNN graph on irregular data.
    normalize
        ``"row"``: every spot's weights sum to 1 (so the loss strength does not depend on
        how many neighbours a spot has); ``None``: raw ring weights.
    similarity
        ``None`` (plain rings) or a metric of
        :func:`~cellweave.impute.similarity.similarity_weights` (``"gaussian"`` or
        ``"correlation"``): edges between spots that look unalike get less weight.
    similarity_scale
        Bandwidth factor of the ``"gaussian"`` similarity.
    similarity_features
        Features to compute the similarity from instead of the expression (one row per
        spot, e.g. histology).
    X
        Counts (spots x genes) to compute the similarity from (required with ``similarity``
        unless ``similarity_features`` are given).
    random_state
        Seed of the PCA behind the similarity features.
    """
    coords = np.asarray(coords, dtype=np.float64)
    order = ring_orders(coords, max_order=len(weights), n_neighbors=n_neighbors, method=graph)
    W = _graph.ring_weights(order, weights=weights, normalize=None)
    if similarity is not None:
        if X is None and similarity_features is None:
            raise InputError("similarity gating needs the counts; pass X=<spots x genes counts>")
        W = gate_by_similarity(
            W,
            X,
            metric=similarity,
            scale=similarity_scale,
            random_state=random_state,
            features=similarity_features,
        )
    if normalize == "row":
        degree = np.asarray(W.sum(axis=1)).ravel()
        inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
        W = sparse.csr_matrix(sparse.diags(inv) @ W)
    elif normalize is not None:
        raise InputError(f"normalize={normalize!r}; choose 'row' or None")
    return SpatialGraph.from_matrix(W)


def spatial_penalty(
    z_src: torch.Tensor,
    z_dst: torch.Tensor,
    weight: torch.Tensor,
    *,
    gram: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sum_e w_e ||z_src[e] - z_dst[e]||^2`` (in the metric ``gram`` when given:
    ``d^T gram d``, e.g. ``Vc^T Vc`` to measure embedding differences in gene space)."""
    diff = z_src - z_dst
    if gram is None:
        return (weight * (diff * diff).sum(-1)).sum()
    return (weight * ((diff @ gram) * diff).sum(-1)).sum()


class SpatialLoss(nn.Module):
    """Edges of a :class:`SpatialGraph` as torch buffers, selectable by minibatch.

    ``edges(index)`` returns ``(src, dst, weight)`` of the edges leaving the spots ``index``
    (all edges when ``index`` is ``None``); a model gathers the representation of both ends
    and calls :func:`spatial_penalty`.
    """

    def __init__(self, graph: SpatialGraph) -> None:
        super().__init__()
        self.n_obs = graph.n_obs
        self.register_buffer("src", torch.as_tensor(graph.src, dtype=torch.long), persistent=False)
        self.register_buffer("dst", torch.as_tensor(graph.dst, dtype=torch.long), persistent=False)
        self.register_buffer(
            "weight", torch.as_tensor(graph.weight, dtype=torch.float32), persistent=False
        )

    @property
    def n_edges(self) -> int:
        return int(self.src.numel())

    def edges(
        self, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if index is None or index.numel() == self.n_obs:
            return self.src, self.dst, self.weight
        member = torch.zeros(self.n_obs, dtype=torch.bool, device=self.src.device)
        member[index] = True
        keep = member[self.src]
        return self.src[keep], self.dst[keep], self.weight[keep]


def build_spatial_loss(
    X1,
    coords,
    *,
    spatial_weight: float | str | Sequence[float],
    weights: Sequence[float],
    similarity: Metric | None,
    similarity_features: np.ndarray | None,
    n_neighbors: int,
    random_state: int,
    method: str,
) -> SpatialLoss | None:
    """The spatial loss of a model over the spots of ``X1`` (``None`` when no spot has a
    neighbour, or when ``spatial_weight`` is a number ``<= 0``: the loss is off); raises the
    one-line coordinates error when ``coords`` is missing."""
    if isinstance(spatial_weight, int | float) and spatial_weight <= 0:
        return None
    coords = require_coords(
        coords,
        n_obs=X1.shape[0],
        method=method,
        fix="switch the spatial loss off with spatial_weight=0",
    )
    graph = spatial_graph(
        coords,
        weights=weights,
        n_neighbors=n_neighbors,
        similarity=similarity,
        similarity_features=similarity_features,
        X=X1,
        random_state=random_state,
    )
    return SpatialLoss(graph) if graph.n_edges else None
