"""Embedding scatter plots (UMAP, PCA, latent spaces) coloured by labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._colors import shared_palettes
from ._save import finish

__all__ = ["embedding", "umap_coordinates"]


_EXACT_KNN_MAX_CELLS = 8192  # scanpy's own switch from exact to approximate neighbours


def _approximate_knn(n_obs: int, n_neighbors: int, random_state: int):
    """pynndescent's kNN transformer, set up as scanpy/UMAP do, returning
    ``scipy.sparse.csr_matrix``.

    scanpy 1.11 takes pynndescent for 8,192 cells and more, but cannot read the
    ``csr_array`` that pynndescent returns with scipy >= 1.15 (``getnnz``); exact
    neighbours instead cost quadratic time. This keeps the approximate search and hands
    scanpy the matrix type it reads.
    """
    from pynndescent import PyNNDescentTransformer
    from scipy import sparse

    class ScipyMatrixNNDescent(PyNNDescentTransformer):
        def transform(self, X, y=None):
            return sparse.csr_matrix(super().transform(X, y))

        def fit_transform(self, X, y=None, **fit_params):
            return sparse.csr_matrix(super().fit_transform(X, y, **fit_params))

    return ScipyMatrixNNDescent(
        n_neighbors=n_neighbors,
        metric="euclidean",
        n_trees=min(64, 5 + round(n_obs**0.5 / 20.0)),
        n_iters=max(5, round(np.log2(n_obs))),
        random_state=random_state,
    )


def umap_coordinates(
    latent: np.ndarray, *, n_neighbors: int = 15, random_state: int = 0
) -> np.ndarray:
    """2-D UMAP of a latent space (scanpy's kNN graph on ``latent`` and ``tl.umap``), for
    :func:`embedding`.

    The kNN graph is exact (scikit-learn) below 8,192 cells and approximate (pynndescent, as
    scanpy and UMAP set it up) from there, so a million cells take minutes, not hours.
    """
    import anndata as ad
    import scanpy as sc

    latent = np.asarray(latent)
    n_obs = latent.shape[0]
    transformer = (
        "sklearn"
        if n_obs < _EXACT_KNN_MAX_CELLS
        else _approximate_knn(n_obs, n_neighbors, random_state)
    )
    adata = ad.AnnData(obsm={"X_latent": latent})
    sc.pp.neighbors(
        adata,
        use_rep="X_latent",
        n_neighbors=n_neighbors,
        transformer=transformer,
        random_state=random_state,
    )
    sc.tl.umap(adata, random_state=random_state)
    return np.asarray(adata.obsm["X_umap"])


def embedding(
    coords: np.ndarray,
    *,
    color: Mapping[str, Sequence],
    palette: Mapping[str, Mapping[str, str]] | None = None,
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
    palette
        Panel name -> {category: colour}, e.g. from
        :func:`~cellweave.plotting.obs_palette` (``uns[f"{key}_colors"]``), so that several
        figures of one data set colour a category alike; categories it lacks (and panels
        without one) get colours shared by panels whose categories overlap.
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
    panels = {name: pd.Series(np.asarray(labels)) for name, labels in color.items()}
    numeric = {
        name for name, v in panels.items() if pd.api.types.is_numeric_dtype(v) and v.nunique() > 20
    }
    palettes = shared_palettes(
        {n: v.astype(str).unique() for n, v in panels.items() if n not in numeric}
    )
    for ax, (name, labels) in zip(axes.flat, panels.items(), strict=True):
        if name in numeric:
            m = ax.scatter(
                coords[order, 0], coords[order, 1], c=labels.to_numpy()[order], s=size, linewidths=0
            )
            fig.colorbar(m, ax=ax, fraction=0.046, pad=0.02)
        else:
            cats = labels.astype(str).astype("category")
            panel_palette = {**palettes[name], **(palette or {}).get(name, {})}
            point_colors = [panel_palette[c] for c in cats.to_numpy()[order]]
            ax.scatter(coords[order, 0], coords[order, 1], c=point_colors, s=size, linewidths=0)
            for cat in cats.cat.categories:
                ax.scatter([], [], color=panel_palette[cat], label=cat)
            ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), frameon=False, fontsize="small")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, save)
