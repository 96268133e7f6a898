"""Embedding scatter plots (UMAP, PCA, latent spaces) coloured by labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._colors import category_colors
from ._save import finish

__all__ = ["embedding", "umap_coordinates"]


def umap_coordinates(latent: np.ndarray, *, random_state: int = 0) -> np.ndarray:
    """2-D UMAP of a latent space (scanpy's kNN graph on ``latent`` and ``tl.umap``), for
    :func:`embedding`.

    The kNN graph is exact (scikit-learn): scanpy 1.11 switches to pynndescent from 8,192
    cells, whose sparse-array output it cannot read with scipy >= 1.15 (``getnnz``).
    """
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(obsm={"X_latent": np.asarray(latent)})
    sc.pp.neighbors(adata, use_rep="X_latent", transformer="sklearn", random_state=random_state)
    sc.tl.umap(adata, random_state=random_state)
    return np.asarray(adata.obsm["X_umap"])


def embedding(
    coords: np.ndarray,
    *,
    color: Mapping[str, Sequence],
    size: float | None = None,
    title: str | None = None,
    save: str | Path | None = None,
):
    """Scatter a 2-D embedding once per labelling in ``color``.

    Parameters
    ----------
    coords
        ``(n, >=2)`` array; the first two columns are drawn.
    color
        Panel name -> labels (categorical) or values (numeric), one per point.
    size
        Marker size; chosen from the number of points when ``None``.
    title
        Figure title.
    save
        Write the figure to this path and close it.
    """
    import matplotlib.pyplot as plt

    coords = np.asarray(coords)
    fig, axes = plt.subplots(1, len(color), figsize=(4.6 * len(color), 4), squeeze=False)
    size = size if size is not None else float(np.clip(20000 / max(len(coords), 1), 0.5, 40))
    order = np.random.default_rng(0).permutation(len(coords))  # no category drawn on top
    for ax, (name, labels) in zip(axes.flat, color.items(), strict=True):
        labels = pd.Series(np.asarray(labels))
        if pd.api.types.is_numeric_dtype(labels) and labels.nunique() > 20:
            m = ax.scatter(
                coords[order, 0], coords[order, 1], c=labels.to_numpy()[order], s=size, linewidths=0
            )
            fig.colorbar(m, ax=ax, fraction=0.046, pad=0.02)
        else:
            cats = labels.astype(str).astype("category")
            palette = category_colors(cats.cat.categories)
            point_colors = [palette[c] for c in cats.to_numpy()[order]]
            ax.scatter(coords[order, 0], coords[order, 1], c=point_colors, s=size, linewidths=0)
            for cat, col in palette.items():
                ax.scatter([], [], color=col, label=cat)
            ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), frameon=False, fontsize="small")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, save)
