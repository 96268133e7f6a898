"""Maps of a mapping's outputs (:func:`cellweave.tl.map_cells`): cell-type fractions, predicted
genes, the attention method's view weights, and predicted vs true fractions.

Every map draws the spots at ``obsm["spatial"]`` as ``sc.pl.spatial`` does, through the same
:func:`~cellweave.plotting.spatial.draw_section`: over the tissue image of ``uns["spatial"]``
when there is one (``img_key``, ``library_id``; spots at their diameter), y axis pointing
down, markers as large as the spots' spacing without an image. Panels meant to be compared
share one colour scale and one colour bar; titles are the names of the types, genes or
views, not the raw keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..errors import InputError, MissingKeyError
from ._colors import category_colors
from ._save import finish
from .spatial import SpotLayout, draw_section, fit_spot_sizes, spot_layout

__all__ = [
    "PLOT_KINDS",
    "VIEW_TITLES",
    "fractions",
    "fractions_vs_truth",
    "mapping_plots",
    "plot_paths",
    "predicted_genes",
    "truth_scores",
    "view_weights",
]

#: Human titles of the attention method's views (columns of ``obsm["view_weights"]``).
VIEW_TITLES = {
    "panel": "own panel",
    "neighbours": "neighbour rings",
    "histology": "histology",
    "modality": "other modality",
}
_PANEL_INCHES = 3.4
#: Options of every map grid besides the colour map and title, with their defaults.
_MAP_OPTIONS = {
    "spatial_key": "spatial",
    "img_key": "auto",
    "library_id": None,
    "ncols": 4,
    "size": None,
    "save": None,
}


def _map_options(options: dict[str, Any], caller: str) -> dict[str, Any]:
    """``options`` over the defaults of :data:`_MAP_OPTIONS`; an unknown one is a TypeError."""
    unknown = sorted(set(options) - set(_MAP_OPTIONS))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {unknown}")
    return {**_MAP_OPTIONS, **options}


def _chosen(chosen: Sequence[str], columns: pd.Index, *, what: str, where: str) -> list[str]:
    """``chosen`` as strings, each a column of ``columns``, else one MissingKeyError."""
    chosen = [str(c) for c in chosen]
    absent = [c for c in chosen if c not in columns]
    if absent or not chosen:
        raise MissingKeyError(
            f"{what} {absent[:3]} are not in {where}: pass some of {list(columns[:5])}"
        )
    return chosen


def _table(adata: AnnData, key: str, *, what: str, fix: str) -> pd.DataFrame:
    """``adata.obsm[key]`` as a float DataFrame of one row per spot (string columns)."""
    if key not in adata.obsm:
        raise MissingKeyError(f"adata.obsm[{key!r}] ({what}) is missing: {fix}")
    value = adata.obsm[key]
    if not isinstance(value, pd.DataFrame):
        value = pd.DataFrame(np.asarray(value), index=adata.obs_names)
    table = value.astype(float)
    table.columns = table.columns.astype(str)
    if table.shape[1] == 0:
        raise InputError(f"adata.obsm[{key!r}] ({what}) has no columns: {fix}")
    return table


def _grid(n: int, ncols: int, *, extra_width: float = 0.0):
    """A figure with ``n`` square panels on ``ncols`` columns; unused panels switched off."""
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(_PANEL_INCHES * ncols + extra_width, _PANEL_INCHES * nrows),
        squeeze=False,
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _draw_map(ax, layout: SpotLayout, values: np.ndarray, *, norm, cmap: str, size):
    """One spatial map of ``values`` on ``norm`` over the section's image, if any (NaN spots
    in light grey)."""
    limits = (norm.vmin, norm.vmax)
    return draw_section(ax, layout, size=size, values=values, cmap=cmap, limits=limits)


def _layout(adata: AnnData, options: dict) -> SpotLayout:
    """The spots' :class:`SpotLayout` from ``options``' spatial_key, img_key, library_id."""
    keys = ("spatial_key", "img_key", "library_id")
    return spot_layout(adata, **{k: options[k] for k in keys})


def _shared_maps(
    adata: AnnData,
    key: str,
    *,
    what: str,
    fix: str,
    label: str,
    vmax: float | None,
    titles: dict[str, str],
    options: dict,
):
    """A grid of maps of the columns of ``obsm[key]`` on ONE scale ``[0, vmax]`` (``None``:
    the largest value), one colour bar; ``options``: spatial_key, img_key, library_id,
    ncols, size, cmap, title, save."""
    from matplotlib.colors import Normalize

    table = _table(adata, key, what=what, fix=fix)
    values = table.to_numpy()
    if vmax is None:
        vmax = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    layout = _layout(adata, options)
    fig, axes = _grid(table.shape[1], options["ncols"], extra_width=0.8)
    norm = Normalize(vmin=0.0, vmax=vmax if vmax > 0 else 1.0)
    mappable = None
    for ax, column in zip(axes, table.columns, strict=True):
        mappable = _draw_map(
            ax,
            layout,
            table[column].to_numpy(),
            norm=norm,
            cmap=options["cmap"],
            size=options["size"],
        )
        ax.set_title(titles.get(column, column))
    if options["title"]:
        fig.suptitle(options["title"])
    fig.colorbar(mappable, ax=axes, shrink=0.8, label=label)
    fit_spot_sizes(axes, layout, options["size"])
    return finish(fig, options["save"])


def fractions(
    adata: AnnData,
    *,
    key: str = "cell_type_fractions",
    spatial_key: str = "spatial",
    img_key: str | None = "auto",
    library_id: str | None = None,
    ncols: int = 4,
    size: float | None = None,
    cmap: str = "viridis",
    title: str | None = "cell-type fractions per spot",
    save: str | Path | None = None,
):
    """Maps of every cell type's fraction, on one shared colour scale ``[0, max]``.

    Parameters
    ----------
    adata
        Spatial data with the fractions ``obsm[key]`` (DataFrame spots x types, as
        :func:`~cellweave.tl.map_cells` writes with ``cell_type_key``).
    key
        ``obsm`` key of the fractions (``f"{key_added}_fractions"`` with ``key_added``).
    spatial_key
        ``obsm`` key of the coordinates.
    img_key, library_id
        Tissue image of ``uns["spatial"]`` drawn under the spots, as in
        :func:`~cellweave.plotting.spatial.spatial` (``"auto"``: ``hires``, else ``lowres``,
        else none; ``None``: never); spots are then drawn at their diameter.
    ncols
        Panels per row.
    size
        Marker size in points²; from the spots' spacing when ``None``.
    cmap
        Colour map.
    title
        Figure title (``None``: none).
    save
        Write the figure to this path (format by suffix) and close it.

    Returns
    -------
    The matplotlib figure: one panel per type (titled with the type), every panel on the same
    ``Normalize(0, max fraction)``, one colour bar.
    """
    options = dict(spatial_key=spatial_key, img_key=img_key, library_id=library_id)
    options.update(ncols=ncols, size=size, cmap=cmap, title=title)
    return _shared_maps(
        adata,
        key,
        what="cell-type fractions",
        fix="run cellweave.tl.map_cells(adata_sc, adata_sp, cell_type_key=...) first, or pass key=",
        label="fraction",
        vmax=None,
        titles={},
        options={**options, "save": save},
    )


def view_weights(
    adata: AnnData,
    *,
    key: str = "view_weights",
    cmap: str = "magma",
    title: str | None = "attention weight of each view",
    **options: Any,
):
    """Maps of the attention method's per-spot view weights, on one scale ``[0, 1]``.

    Parameters
    ----------
    adata
        Spatial data with ``obsm[key]``: a DataFrame spots x views (columns among
        ``"panel"``, ``"neighbours"``, ``"histology"``, ``"modality"``; rows sum to 1), as
        ``map_cells(method="attention")`` writes.
    key, cmap, title
        As in :func:`fractions`.
    **options
        ``spatial_key``, ``img_key``, ``library_id``, ``ncols``, ``size``, ``save``, as in
        :func:`fractions`.

    Returns
    -------
    The figure: one panel per view (titled as in :data:`VIEW_TITLES`), one colour bar.
    """
    return _shared_maps(
        adata,
        key,
        what="view weights",
        fix="map with cellweave.tl.map_cells(..., method='attention') first, or pass key=",
        label="view weight",
        vmax=1.0,
        titles=VIEW_TITLES,
        options={**_map_options(options, "view_weights"), "cmap": cmap, "title": title},
    )


def _top_genes(table: pd.DataFrame, n: int) -> list[str]:
    """The ``n`` predicted genes of largest variance of ``log1p`` across spots."""
    spread = np.log1p(np.clip(table.to_numpy(), 0, None)).var(axis=0)
    order = np.argsort(-np.nan_to_num(spread), kind="stable")[:n]
    return [str(table.columns[i]) for i in order]


def predicted_genes(
    adata: AnnData,
    *,
    genes: Sequence[str] | None = None,
    n_genes: int = 8,
    key: str = "predicted_genes",
    title: str | None = "predicted expression",
    cmap: str = "viridis",
    **options: Any,
):
    """Maps of predicted genes, each on its own colour scale and colour bar (genes differ
    in level, so one shared scale would hide all but the strongest).

    Parameters
    ----------
    adata
        Spatial data with ``obsm[key]`` (DataFrame spots x genes, as
        :func:`~cellweave.tl.project_genes` writes).
    genes
        Genes to show; ``None``: the ``n_genes`` most variable predicted genes.
    n_genes
        How many genes to show when ``genes`` is ``None``.
    key, title, cmap
        As in :func:`fractions`.
    **options
        ``spatial_key``, ``img_key``, ``library_id``, ``ncols``, ``size``, ``save``, as in
        :func:`fractions`.

    Returns
    -------
    The figure: one panel per gene (titled with the gene), each with its colour bar.
    """
    from matplotlib.colors import Normalize

    table = _table(
        adata,
        key,
        what="predicted genes",
        fix="run cellweave.tl.project_genes(mapping, adata_sc, adata_sp=adata_sp) first",
    )
    if genes is None:
        genes = _top_genes(table, int(n_genes))
    genes = _chosen(genes, table.columns, what="genes", where=f"adata.obsm[{key!r}]")
    options = _map_options(options, "predicted_genes")
    ncols = options["ncols"]
    layout = _layout(adata, options)
    fig, axes = _grid(len(genes), ncols, extra_width=0.6 * min(ncols, len(genes)))
    for ax, gene in zip(axes, genes, strict=True):
        values = table[gene].to_numpy()
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        norm = Normalize(vmin=low, vmax=high if high > low else low + 1.0)
        mappable = _draw_map(ax, layout, values, norm=norm, cmap=cmap, size=options["size"])
        fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(gene)
    if title:
        fig.suptitle(title)
    fit_spot_sizes(axes, layout, options["size"])
    return finish(fig, options["save"])


def _truth_pair(adata: AnnData, key: str, truth_key: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predicted and true fractions over the types and spots both know (NaN rows dropped)."""
    predicted = _table(
        adata,
        key,
        what="cell-type fractions",
        fix="run cellweave.tl.map_cells(adata_sc, adata_sp, cell_type_key=...) first, or pass key=",
    )
    truth = _table(
        adata,
        truth_key,
        what="true fractions",
        fix="pass truth_key= naming the true fractions (the simulator writes 'true_fractions')",
    )
    types = [t for t in predicted.columns if t in truth.columns]
    if not types:
        raise MissingKeyError(
            f"adata.obsm[{key!r}] and adata.obsm[{truth_key!r}] share no cell type (e.g. "
            f"{list(predicted.columns[:3])} vs {list(truth.columns[:3])}): map with the "
            "cell_type_key the truth was made from"
        )
    predicted, truth = predicted[types], truth.reindex(index=predicted.index)[types]
    return predicted, truth


def truth_scores(predicted: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float]:
    """RMSE and Pearson r of predicted vs true fractions over every (spot, type) entry of the
    spots where both are finite."""
    p, t = predicted.to_numpy(dtype=float), truth.to_numpy(dtype=float)
    ok = np.isfinite(p).all(axis=1) & np.isfinite(t).all(axis=1)
    p, t = p[ok].ravel(), t[ok].ravel()
    if p.size == 0:
        return float("nan"), float("nan")
    rmse = float(np.sqrt(np.mean((p - t) ** 2)))
    r = float(np.corrcoef(p, t)[0, 1]) if p.std() > 0 and t.std() > 0 else float("nan")
    return rmse, r


def fractions_vs_truth(
    adata: AnnData,
    *,
    key: str = "cell_type_fractions",
    truth_key: str = "true_fractions",
    types: Sequence[str] | None = None,
    spatial_key: str = "spatial",
    img_key: str | None = "auto",
    library_id: str | None = None,
    pairs_per_row: int = 3,
    size: float | None = None,
    cmap: str = "viridis",
    save: str | Path | None = None,
):
    """Predicted and true fractions side by side per type, and predicted vs true scattered.

    Parameters
    ----------
    adata
        Spatial data with the predicted fractions ``obsm[key]`` and the truth
        ``obsm[truth_key]`` (DataFrame spots x types, as ``cw.sim.simulate_spatial`` writes).
    key, truth_key
        ``obsm`` keys of the predicted and the true fractions.
    types
        Cell types to draw (default: every type both tables hold).
    spatial_key, img_key, library_id
        As in :func:`fractions`.
    pairs_per_row
        (predicted, true) pairs per row of maps.
    size, cmap, save
        As in :func:`fractions`.

    Returns
    -------
    The figure: for each type a predicted and a true map on the SAME ``Normalize(0, max of
    both)`` (colour bar beside the true map), then one scatter of every (spot, type) entry,
    predicted against true, titled with the RMSE and Pearson r (:func:`truth_scores`).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    predicted, truth = _truth_pair(adata, key, truth_key)
    if types is not None:
        where = f"both adata.obsm[{key!r}] and adata.obsm[{truth_key!r}]"
        types = _chosen(types, predicted.columns, what="types", where=where)
        predicted, truth = predicted[types], truth[types]
    layout = spot_layout(adata, spatial_key=spatial_key, img_key=img_key, library_id=library_id)
    types = list(predicted.columns)
    pairs = max(1, min(int(pairs_per_row), len(types)))
    nrows = int(np.ceil(len(types) / pairs)) + 1
    fig = plt.figure(figsize=(2 * pairs * _PANEL_INCHES + 0.6 * pairs, _PANEL_INCHES * nrows))
    grid = fig.add_gridspec(nrows, 2 * pairs)
    for i, cell_type in enumerate(types):
        row, col = divmod(i, pairs)
        both = np.concatenate([predicted[cell_type].to_numpy(), truth[cell_type].to_numpy()])
        vmax = float(np.nanmax(both)) if np.isfinite(both).any() else 1.0
        norm = Normalize(vmin=0.0, vmax=vmax if vmax > 0 else 1.0)
        for j, (table, word) in enumerate(((predicted, "predicted"), (truth, "true"))):
            ax = fig.add_subplot(grid[row, 2 * col + j])
            mappable = _draw_map(
                ax, layout, table[cell_type].to_numpy(), norm=norm, cmap=cmap, size=size
            )
            ax.set_title(f"{cell_type}: {word}")
        fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    _truth_scatter(fig.add_subplot(grid[nrows - 1, 0:2]), predicted, truth)
    fig.tight_layout()
    fit_spot_sizes(_spatial_axes(fig), layout, size)
    return finish(fig, save)


def _spatial_axes(fig) -> list:
    """The map axes of ``fig``: those :func:`frame_spatial` framed (y axis inverted)."""
    return [ax for ax in fig.axes if ax.yaxis_inverted()]


def _truth_scatter(ax, predicted: pd.DataFrame, truth: pd.DataFrame) -> None:
    """Every (spot, type) entry, predicted against true, coloured by type; y = x dashed."""
    colors = category_colors(list(predicted.columns))
    for cell_type in predicted.columns:
        ax.scatter(
            truth[cell_type],
            predicted[cell_type],
            s=6,
            color=colors[cell_type],
            alpha=0.6,
            linewidths=0,
            label=cell_type,
        )
    ax.plot([0, 1], [0, 1], ls="--", c="0.4", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("true fraction")
    ax.set_ylabel("predicted fraction")
    rmse, r = truth_scores(predicted, truth)
    ax.set_title(f"predicted vs true: RMSE {rmse:.3f}, Pearson r {r:.3f}")
    if len(predicted.columns) <= 20:
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), frameon=False, fontsize="small")


#: What :func:`mapping_plots` draws, in order: the file-name suffix of each figure.
PLOT_KINDS = ("fractions", "genes", "views", "truth")


def plot_paths(path: str | Path) -> dict[str, Path]:
    """The figure :func:`mapping_plots` writes for each kind: ``PLOT.png`` ->
    ``PLOT_fractions.png``, ``PLOT_genes.png``, ``PLOT_views.png``, ``PLOT_truth.png``."""
    path = Path(path)
    return {kind: path.with_name(f"{path.stem}_{kind}{path.suffix}") for kind in PLOT_KINDS}


def mapping_plots(
    adata: AnnData,
    path: str | Path,
    *,
    fractions_key: str = "cell_type_fractions",
    views_key: str = "view_weights",
    genes_key: str = "predicted_genes",
    truth_key: str = "true_fractions",
    spatial_key: str = "spatial",
    img_key: str | None = "auto",
    library_id: str | None = None,
) -> dict[str, Path]:
    """Write every plot of a mapping that its outputs allow (see :func:`plot_paths`):
    fractions (:func:`fractions`), predicted genes (:func:`predicted_genes`), view weights
    (:func:`view_weights`, attention only) and predicted vs true fractions
    (:func:`fractions_vs_truth`, where ``obsm[truth_key]`` exists).

    Parameters
    ----------
    adata
        The spatial data ``map_cells`` (and ``project_genes``) wrote into.
    path
        ``PLOT.png``: the figures are written next to it as ``PLOT_<kind>.png``.
    fractions_key, views_key
        ``obsm`` keys of the fractions and the view weights: ``map_cells``' defaults; after
        ``map_cells(..., key_added=K)`` pass ``**cellweave.mapping.output_keys(K)`` (the
        mapping owns the rule that names them).
    genes_key, truth_key, spatial_key
        ``obsm`` keys of the predicted genes, the true fractions and the coordinates.
    img_key, library_id
        Tissue image drawn under the spots of every map, as in :func:`fractions`.

    Returns
    -------
    ``{kind: path}`` of the figures written (kinds whose data are absent are skipped).
    """
    where = dict(spatial_key=spatial_key, img_key=img_key, library_id=library_id)
    drawers = {
        "fractions": (
            fractions_key,
            lambda p: fractions(adata, key=fractions_key, save=p, **where),
        ),
        "genes": (
            genes_key,
            lambda p: predicted_genes(adata, key=genes_key, save=p, **where),
        ),
        "views": (
            views_key,
            lambda p: view_weights(adata, key=views_key, save=p, **where),
        ),
        "truth": (
            truth_key,
            lambda p: fractions_vs_truth(
                adata, key=fractions_key, truth_key=truth_key, save=p, **where
            ),
        ),
    }
    written = {}
    for kind, target in plot_paths(path).items():
        needed, draw = drawers[kind]
        if needed in adata.obsm and (kind != "truth" or fractions_key in adata.obsm):
            draw(target)
            written[kind] = target
    return written
