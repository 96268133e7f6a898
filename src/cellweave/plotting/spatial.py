"""Spatial maps: spots or cells at their coordinates, coloured by a category or a value."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from ..validate import check_spatial
from ._colors import shared_palettes, values_for
from ._save import finish

__all__ = ["frame_spatial", "spatial", "spot_size"]


def spatial(
    adata: AnnData,
    *,
    color: str | Sequence[str],
    layer: str | None = None,
    spatial_key: str = "spatial",
    size: float | None = None,
    cmap: str = "viridis",
    ncols: int = 4,
    title: str | Sequence[str] | None = None,
    save: str | Path | None = None,
):
    """Plot spots/cells at ``obsm[spatial_key]`` coloured by one or more keys.

    Parameters
    ----------
    adata
        Annotated data with spatial coordinates.
    color
        ``obs`` column(s), gene name(s), or ``"obsm_key:column"`` (e.g. a cell-type fraction).
    layer
        Layer to read gene values from (``X`` when ``None``).
    spatial_key
        Key of the coordinates in ``obsm`` (only the first two axes are drawn).
    size
        Marker size; chosen from the number of points when ``None``.
    cmap
        Colour map for continuous values.
    ncols
        Panels per row.
    title
        Panel title(s); the keys when ``None``.
    save
        Write the figure to this path (PNG/PDF/SVG by suffix) and close it.

    Returns
    -------
    The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    coords = check_spatial(adata, spatial_key=spatial_key)
    keys = [color] if isinstance(color, str) else list(color)
    titles = keys if title is None else ([title] if isinstance(title, str) else list(title))
    ncols = min(ncols, len(keys))
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4 * nrows), squeeze=False)
    size = size if size is not None else float(np.clip(30000 / max(len(coords), 1), 0.5, 60))
    panels = {key: values_for(adata, key, layer=layer) for key in keys}
    palettes = shared_palettes(
        {k: v.dropna().astype(str).unique() for k, v in panels.items() if _categorical(v)}
    )  # numeric panels get none: a colour bar
    for ax, key, panel_title in zip(axes.flat, keys, titles, strict=False):
        _draw(ax, coords, panels[key], size=size, cmap=cmap, palette=palettes.get(key))
        ax.set_title(panel_title)
        frame_spatial(ax, coords)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    return finish(fig, save)


def _categorical(values) -> bool:
    return isinstance(values, pd.Series) and not pd.api.types.is_numeric_dtype(values)


def _draw(ax, coords: np.ndarray, values, *, size: float, cmap: str, palette: dict | None) -> None:
    """Categories in ``palette``'s colours (keyed by ``str(category)``), or, without a
    palette, numbers on ``cmap`` with a colour bar."""
    x, y = coords[:, 0], coords[:, 1]
    if palette is not None:
        cats = values.astype("category")
        for cat in cats.cat.categories:
            sel = (cats == cat).to_numpy()
            ax.scatter(
                x[sel], y[sel], s=size, color=palette[str(cat)], label=str(cat), linewidths=0
            )
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1, 0.5),
            frameon=False,
            markerscale=2,
            fontsize="small",
        )
        return
    mappable = ax.scatter(x, y, c=np.asarray(values, dtype=float), s=size, cmap=cmap, linewidths=0)
    ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)


def frame_spatial(ax, coords: np.ndarray) -> None:
    """Frame a spatial map as ``sc.pl.spatial`` does: equal aspect, no ticks, and the y axis
    pointing down (image row coordinates grow downwards), so maps match scanpy's."""
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if not ax.yaxis_inverted():
        ax.invert_yaxis()


def spot_size(ax, coords: np.ndarray, *, fill: float = 0.9) -> float:
    """Marker size (points²) of spots ``fill`` times as wide as their spacing (the median
    distance to the nearest other spot) on ``ax`` as laid out, with equal aspect."""
    from ..graph import nearest_neighbors

    xy = np.asarray(coords, dtype=float)[:, :2]
    if len(xy) < 2:
        return 40.0
    dist, _ = nearest_neighbors(xy, 1, include_self=False)
    positive = dist[:, 0][dist[:, 0] > 0]
    span = np.ptp(xy, axis=0)
    if positive.size == 0 or not (span > 0).any():
        return 40.0
    spacing = float(np.median(positive))
    box = ax.get_position()
    width, height = ax.figure.get_size_inches()
    span = np.where(span > 0, span, span.max()) + spacing  # room for half a spot each side
    points_per_unit = min(box.width * width * 72 / span[0], box.height * height * 72 / span[1])
    return float(np.clip((fill * spacing * points_per_unit) ** 2, 0.2, 400.0))
