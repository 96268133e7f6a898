"""Two sections overlaid before and after alignment (:func:`cellweave.tl.align_sections`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from anndata import AnnData

from ..errors import MissingKeyError
from ..validate import check_spatial
from ._save import finish
from .spatial import frame_spatial

__all__ = ["overlay"]

_COLORS = ("#1f77b4", "#d62728")  # section a, section b


def overlay(
    adata_a: AnnData,
    adata_b: AnnData,
    *,
    key: str = "spatial_aligned",
    spatial_key: str = "spatial",
    labels: tuple[str, str] = ("section A", "section B"),
    show_matches: int = 0,
    size: float | None = None,
    title: str | None = None,
    save: str | Path | None = None,
):
    """Plot two sections overlaid in their original coordinates and after alignment.

    Parameters
    ----------
    adata_a, adata_b
        The reference and the aligned section, as written by
        :func:`~cellweave.align.align_sections`.
    key
        ``obsm`` key of the aligned coordinates (on both sections; ``adata_a`` falls back to
        ``obsm[spatial_key]``).
    spatial_key
        ``obsm`` key of the original coordinates.
    labels
        Legend names of the two sections.
    show_matches
        Draw this many matches of ``uns[key]["matching"]`` (the heaviest; or of
        ``uns["alignment"]``) as lines in the aligned panel; 0 for none.
    size
        Marker size; chosen from the number of spots when ``None``.
    title
        Figure title.
    save
        Write the figure to this path (format by suffix) and close it.

    Returns
    -------
    The matplotlib figure (two panels: before, after; only the first two axes are drawn).
    """
    import matplotlib.pyplot as plt

    before_a = check_spatial(adata_a, spatial_key=spatial_key, name="adata_a")
    before_b = check_spatial(adata_b, spatial_key=spatial_key, name="adata_b")
    if key not in adata_b.obsm:
        raise MissingKeyError(
            f"adata_b.obsm[{key!r}] is missing: run cellweave.tl.align_sections(adata_a, "
            f"adata_b, key_added={key!r}) first, or pass key=..."
        )
    after_b = check_spatial(adata_b, spatial_key=key, name="adata_b")
    after_a = check_spatial(adata_a, spatial_key=key if key in adata_a.obsm else spatial_key)
    n = len(before_a) + len(before_b)
    size = size if size is not None else float(np.clip(12000 / max(n, 1), 1, 40))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    panels = (("before alignment", before_a, before_b), ("after alignment", after_a, after_b))
    for ax, (panel, xa, xb) in zip(axes, panels, strict=True):
        for xy, color, label in ((xa, _COLORS[0], labels[0]), (xb, _COLORS[1], labels[1])):
            ax.scatter(xy[:, 0], xy[:, 1], s=size, c=color, alpha=0.5, lw=0, label=label)
        ax.set_title(panel)
        frame_spatial(ax, None)  # equal aspect, y down as sc.pl.spatial
    if show_matches:
        _draw_matches(axes[1], adata_b, after_a, after_b, int(show_matches), key=key)
    axes[0].legend(loc="best", markerscale=2, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, save)


def _draw_matches(ax, adata_b: AnnData, xa: np.ndarray, xb: np.ndarray, n: int, *, key) -> None:
    from matplotlib.collections import LineCollection

    info = adata_b.uns.get(key) or adata_b.uns.get("alignment", {})
    matching = info.get("matching")
    if matching is None:
        return
    coo = matching.tocoo()
    if coo.nnz == 0:
        return
    order = np.argsort(coo.data)[::-1][:n]
    segments = np.stack([xb[coo.row[order], :2], xa[coo.col[order], :2]], axis=1)
    ax.add_collection(LineCollection(segments, colors="0.3", linewidths=0.5, alpha=0.6))
