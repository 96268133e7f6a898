"""Spatial maps: spots or cells at their coordinates, coloured by a category or a value, over
the tissue image when ``uns["spatial"]`` holds one (as ``sc.pl.spatial``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from ..errors import InputError
from ..validate import check_spatial
from ._colors import human_title, obs_palette, shared_palettes, values_for
from ._save import finish

__all__ = ["frame_spatial", "shared_limits", "spatial", "spot_size"]


def spatial(
    adata: AnnData,
    *,
    color: str | Sequence[str],
    layer: str | Sequence[str | None] | None = None,
    spatial_key: str = "spatial",
    img_key: str | None = "auto",
    library_id: str | None = None,
    size: float | None = None,
    cmap: str = "viridis",
    share_scale: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    ncols: int = 4,
    title: str | Sequence[str] | None = None,
    save: str | Path | None = None,
):
    """Plot spots/cells at ``obsm[spatial_key]`` coloured by one or more keys, in
    ``sc.pl.spatial``'s orientation (y down) and over the tissue image when there is one.

    Parameters
    ----------
    adata
        Annotated data with spatial coordinates.
    color
        ``obs`` column(s), gene name(s), or ``"obsm_key:column"`` (e.g. a cell-type fraction).
    layer
        Layer to read gene values from (``X`` when ``None``), or one per key of ``color``
        (e.g. ``color=[gene, gene], layer=["counts_lognorm", "imputed"]`` for observed and
        imputed side by side).
    spatial_key
        Key of the coordinates in ``obsm`` (only the first two axes are drawn).
    img_key
        Image of ``uns["spatial"][library_id]["images"]`` drawn under the spots (scanpy's
        layout: coordinates in full-resolution pixels times ``tissue_<img_key>_scalef``; spots
        ``spot_diameter_fullres`` wide). ``"auto"``: ``hires``, else ``lowres``, else none;
        ``None``: never.
    library_id
        Library of ``uns["spatial"]`` (the only one with an image when ``None``).
    size
        Marker size (points²) when spots are not drawn at their diameter; from the spot
        spacing when ``None``.
    cmap
        Colour map for continuous values.
    share_scale
        One colour scale (the joint range) for every numeric panel, so that panels meant to
        be compared (observed / imputed / truth) can be.
    vmin, vmax
        Colour limits of numeric panels (override ``share_scale``'s range).
    ncols
        Panels per row.
    title
        Panel title(s); readable names of the keys when ``None`` (``"fraction of CA1"`` for
        ``"cell_type_fractions:CA1"``).
    save
        Write the figure to this path (PNG/PDF/SVG by suffix) and close it.

    Returns
    -------
    The matplotlib figure. Categories of an ``obs`` column keep the colours of
    ``uns[f"{key}_colors"]`` (written there when absent, as scanpy does).
    """
    import matplotlib.pyplot as plt

    coords = check_spatial(adata, spatial_key=spatial_key)[:, :2]
    keys = [color] if isinstance(color, str) else list(color)
    layers = _layers(layer, len(keys))
    titles = (
        [_title(adata, k, lay) for k, lay in zip(keys, layers, strict=True)]
        if title is None
        else ([title] if isinstance(title, str) else list(title))
    )
    image = _image(adata, img_key, library_id)
    diameter = None
    if image is not None:
        coords = coords * image.scale
        diameter = None if image.spot_diameter is None else image.spot_diameter * image.scale
    ncols = min(ncols, len(keys))
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4 * nrows), squeeze=False)
    panels = {  # (key, layer, place): the same key may be drawn twice
        (key, lay, i): values_for(adata, key, layer=lay)
        for i, (key, lay) in enumerate(zip(keys, layers, strict=True))
    }
    palettes = _palettes(adata, panels)
    limits = shared_limits([v for k, v in panels.items() if k not in palettes], vmin, vmax)
    if not share_scale:
        limits = (vmin, vmax)
    for ax, key, panel_title in zip(axes.flat, panels, titles, strict=False):
        if image is not None:
            ax.imshow(image.pixels.squeeze(), cmap="gray" if image.pixels.shape[2] == 1 else None)
        spot = size if size is not None else spot_size(ax, coords)
        _draw(
            ax,
            coords,
            panels[key],
            size=spot,
            diameter=diameter,
            cmap=cmap,
            palette=palettes.get(key),
            limits=limits,
        )
        ax.set_title(panel_title)
        frame_spatial(ax, coords if image is None else None)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    return finish(fig, save)


def _layers(layer, n: int) -> list[str | None]:
    """One layer per panel."""
    if layer is None or isinstance(layer, str):
        return [layer] * n
    layers = list(layer)
    if len(layers) != n:
        raise InputError(f"layer has {len(layers)} entries for {n} keys of color: give one each")
    return layers


def _title(adata: AnnData, key: str, layer: str | None) -> str:
    if key in adata.obs:
        return human_title(key, obs=True)
    return human_title(key, layer=layer if key in adata.var_names else None)


def _image(adata: AnnData, img_key: str | None, library_id: str | None):
    """The tissue image to draw under the spots, or ``None`` (no image, or ``img_key=None``)."""
    from ..image import get_image, has_image

    if img_key is None or (img_key == "auto" and not has_image(adata)):
        return None
    return get_image(adata, library_id=library_id, img_key=None if img_key == "auto" else img_key)


def _palettes(adata: AnnData, panels: dict) -> dict[str, dict]:
    """A palette for each categorical panel: colours of ``uns[f"{key}_colors"]`` for ``obs``
    columns (stored when absent), shared between panels whose categories overlap (true and
    predicted labels), so a category has one colour in every panel and every figure."""
    from matplotlib.colors import to_hex

    categorical = {k: v for k, v in panels.items() if _categorical(v)}
    grouped = shared_palettes({k: v.dropna().astype(str).unique() for k, v in categorical.items()})
    stored: dict[str, str] = {}
    for panel in categorical:
        key = panel[0]
        if key in adata.obs and f"{key}_colors" in adata.uns:
            stored = {**obs_palette(adata, key), **stored}
    palettes = {}
    for panel in categorical:
        key = panel[0]
        palettes[panel] = {c: stored.get(c, grouped[panel][c]) for c in grouped[panel]}
        if key in adata.obs and f"{key}_colors" not in adata.uns:
            order = obs_palette(adata, key)  # every category, present or not
            adata.uns[f"{key}_colors"] = [to_hex(palettes[panel].get(c, order[c])) for c in order]
    return palettes


def shared_limits(values: Sequence, vmin: float | None = None, vmax: float | None = None):
    """``(vmin, vmax)`` over every array of ``values`` (finite entries), unless given."""
    finite = [np.asarray(v, dtype=float) for v in values]
    finite = [v[np.isfinite(v)] for v in finite]
    finite = [v for v in finite if v.size]
    if not finite:
        return vmin, vmax
    low = min(float(v.min()) for v in finite) if vmin is None else vmin
    high = max(float(v.max()) for v in finite) if vmax is None else vmax
    return low, high


def _categorical(values) -> bool:
    return isinstance(values, pd.Series) and not pd.api.types.is_numeric_dtype(values)


def _draw(ax, coords, values, *, size, diameter, cmap, palette, limits) -> None:
    """Categories in ``palette``'s colours (keyed by ``str(category)``), or, without a
    palette, numbers on ``cmap`` within ``limits`` with a colour bar. Spots are circles of
    ``diameter`` data units when it is known (over an image), else markers of ``size``."""
    if palette is not None:
        cats = values.astype(str).astype("category")
        colors = [palette[c] for c in cats.to_numpy()]
        _points(ax, coords, size=size, diameter=diameter, color=colors)
        for cat in cats.cat.categories:
            ax.scatter([], [], s=min(size, 40.0), color=palette[cat], label=cat, linewidths=0)
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1, 0.5),
            frameon=False,
            markerscale=1.5,
            fontsize="small",
        )
        return
    mappable = _points(
        ax,
        coords,
        size=size,
        diameter=diameter,
        values=np.asarray(values, dtype=float),
        cmap=cmap,
        limits=limits,
    )
    ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)


def _points(ax, coords, *, size, diameter, color=None, values=None, cmap=None, limits=(None, None)):
    """Draw the spots: a scatter of markers, or circles of ``diameter`` data units."""
    if diameter is None:
        return ax.scatter(
            coords[:, 0],
            coords[:, 1],
            s=size,
            c=color if values is None else values,
            cmap=cmap,
            vmin=limits[0],
            vmax=limits[1],
            linewidths=0,
        )
    from matplotlib.collections import EllipseCollection

    circles = EllipseCollection(
        widths=diameter,
        heights=diameter,
        angles=0.0,
        units="xy",
        offsets=coords,
        offset_transform=ax.transData,
        linewidths=0,
    )
    if values is None:
        circles.set_facecolor(color)
    else:
        circles.set_array(values)
        circles.set_cmap(cmap)
        circles.set_clim(*limits)
    ax.add_collection(circles)
    return circles


def frame_spatial(ax, coords: np.ndarray | None) -> None:
    """Frame a spatial map as ``sc.pl.spatial`` does: equal aspect, no ticks, and the y axis
    pointing down (image row coordinates grow downwards), so maps match scanpy's. With
    ``coords`` the view is fitted to them (an image, when drawn, sets it otherwise)."""
    if coords is not None and len(coords):
        low, high = coords.min(axis=0), coords.max(axis=0)
        pad = 0.03 * float(max(high - low)) or 1.0
        ax.set_xlim(low[0] - pad, high[0] + pad)
        ax.set_ylim(high[1] + pad, low[1] - pad)
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
