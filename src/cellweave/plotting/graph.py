"""The spatial neighbour graph drawn as edges between spots (``cellweave neighbors --plot``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from anndata import AnnData
from scipy import sparse

from ..errors import MissingKeyError
from ..validate import check_spatial
from ._save import finish
from .spatial import frame_spatial, spot_size

__all__ = ["graph_edges", "spatial_graph"]

_ORDER_COLORS = ("#404040", "#9ecae1", "#fdae6b", "#c7c7c7")  # order 1, 2, 3, further


def graph_edges(adata: AnnData, key: str = "spatial_connectivities") -> tuple[np.ndarray, ...]:
    """Each undirected edge of ``obsp[key]`` once: ``(rows, cols)`` with ``rows < cols``."""
    if key not in adata.obsp:
        raise MissingKeyError(
            f"adata.obsp[{key!r}] is missing: run cellweave.graph.spatial_neighbors(adata) first"
        )
    upper = sparse.triu(sparse.coo_matrix(adata.obsp[key]), k=1)
    lower = sparse.tril(sparse.coo_matrix(adata.obsp[key]), k=-1).T  # directed kNN edges
    both = (abs(upper) + abs(lower)).tocoo()
    keep = both.data != 0
    return both.row[keep], both.col[keep]


def spatial_graph(
    adata: AnnData,
    *,
    key: str = "spatial_connectivities",
    order_key: str | None = "spatial_order",
    spatial_key: str = "spatial",
    max_edges: int = 200_000,
    title: str | None = None,
    save: str | Path | None = None,
):
    """Spots at their coordinates joined by the edges of the neighbour graph ``obsp[key]``,
    each edge coloured by its neighbour order (``obsp[order_key]``: order 1 dark, order 2
    light) when the graph has one; y axis down as ``sc.pl.spatial``.

    Parameters
    ----------
    adata
        Data with coordinates and a graph from :func:`cellweave.graph.spatial_neighbors`.
    key
        ``obsp`` key of the graph.
    order_key
        ``obsp`` key of the ring order of each edge (ignored when absent).
    spatial_key
        ``obsm`` key of the coordinates.
    max_edges
        Draw at most this many edges (an even subsample beyond), to keep huge graphs quick.
    title
        Panel title (default: the edge count and the median neighbours per spot).
    save
        Write the figure to this path and close it.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    coords = check_spatial(adata, spatial_key=spatial_key)[:, :2]
    rows, cols = graph_edges(adata, key)
    order = np.ones(rows.size, dtype=int)
    if order_key is not None and order_key in adata.obsp:
        ring = sparse.csr_matrix(adata.obsp[order_key])
        forward, backward = np.asarray(ring[rows, cols]).ravel(), np.asarray(ring[cols, rows])
        order = np.maximum(forward, backward.ravel())
        order = np.clip(order.astype(int), 1, len(_ORDER_COLORS))
    n_edges = rows.size
    per_spot = np.bincount(np.concatenate([rows, cols]), minlength=len(coords))
    if rows.size > max_edges:
        pick = np.linspace(0, rows.size - 1, max_edges).astype(int)
        rows, cols, order = rows[pick], cols[pick], order[pick]
    fig, ax = plt.subplots(figsize=(6, 5.5))
    draw = np.argsort(-order, kind="stable")  # order 1 on top
    segments = np.stack([coords[rows[draw]], coords[cols[draw]]], axis=1)
    colors = [_ORDER_COLORS[o - 1] for o in order[draw]]
    ax.add_collection(LineCollection(segments, colors=colors, linewidths=0.6, zorder=1))
    ax.scatter(
        coords[:, 0],
        coords[:, 1],
        s=spot_size(ax, coords, fill=0.35),
        c="#d62728",
        linewidths=0,
        zorder=2,
    )
    present = sorted(set(order.tolist()))
    handles = [Line2D([], [], color=_ORDER_COLORS[o - 1], label=f"order {o}") for o in present]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    ax.set_title(title or f"{n_edges} edges, median {np.median(per_spot):.0f} neighbours")
    frame_spatial(ax, coords)
    fig.tight_layout()
    return finish(fig, save)
