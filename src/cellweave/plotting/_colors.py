"""Shared colouring: categorical palettes and value arrays from AnnData keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..errors import MissingKeyError

__all__ = ["category_colors", "category_hex", "shared_palettes", "values_for"]


def category_colors(categories: pd.Index | list[str]) -> dict[str, tuple]:
    """A distinct colour per category (tab10/tab20, cycling beyond 20)."""
    import matplotlib as mpl

    cmap = mpl.colormaps["tab10" if len(categories) <= 10 else "tab20"]
    return {c: cmap(i % cmap.N) for i, c in enumerate(categories)}


def category_hex(categories: pd.Index | list[str]) -> list[str]:
    """:func:`category_colors` as ``"#rrggbb"`` strings in the order of ``categories``: what
    scanpy reads from ``uns[f"{key}_colors"]``. The colour of a category depends only on its
    position in ``categories``, so pass every class (not only those present) to keep it the
    same across figures."""
    from matplotlib.colors import to_hex

    return [to_hex(color) for color in category_colors(list(categories)).values()]


def shared_palettes(panels: Mapping[str, Sequence[str]]) -> dict[str, dict[str, tuple]]:
    """One colour per category for each panel, the same colour for the same category in
    panels that share categories (e.g. true and predicted labels, whose sets differ when a
    class is never predicted); panels with disjoint categories (batches) get their own."""
    groups: list[tuple[list[str], set[str]]] = []  # (panels, their categories), disjoint
    for name, cats in panels.items():
        cats = set(cats)
        joined = [g for g in groups if g[1] & cats]
        groups = [g for g in groups if not g[1] & cats]
        groups.append(
            ([name, *(n for g in joined for n in g[0])], cats.union(*(g[1] for g in joined)))
        )
    palettes = {}
    for members, cats in groups:
        palette = category_colors(sorted(cats))
        palettes.update(dict.fromkeys(members, palette))
    return palettes


def values_for(adata: AnnData, key: str, *, layer: str | None = None) -> pd.Series | np.ndarray:
    """Values to colour by: an ``obs`` column, a gene (from ``layer`` or ``X``), or a column of
    an ``obsm`` DataFrame given as ``"obsm_key:column"``."""
    if key in adata.obs:
        return adata.obs[key]
    if ":" in key:
        obsm_key, column = key.split(":", 1)
        table = adata.obsm.get(obsm_key)
        if isinstance(table, pd.DataFrame) and column in table:
            return table[column].to_numpy()
    if key in adata.var_names:
        matrix = adata.X if layer is None else adata.layers[layer]
        column = matrix[:, adata.var_names.get_loc(key)]
        column = column.toarray() if sparse.issparse(column) else np.asarray(column)
        return column.ravel()
    raise MissingKeyError(
        f"cannot colour by {key!r}: it is neither an obs column, a gene, nor 'obsm_key:column'; "
        "pass one of those"
    )
