"""Shared colouring: categorical palettes and value arrays from AnnData keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..errors import MissingKeyError
from ._palettes import palette_for

__all__ = [
    "category_colors",
    "category_hex",
    "human_title",
    "obs_palette",
    "shared_palettes",
    "values_for",
]


def category_colors(categories: pd.Index | list[str]) -> dict[str, tuple]:
    """A distinct colour per category, as scanpy picks them: its 20-colour palette up to 20
    categories, 28 up to 28, then 102 (cycled beyond)."""
    from matplotlib.colors import to_rgba

    palette = palette_for(len(categories))
    return {c: to_rgba(palette[i % len(palette)]) for i, c in enumerate(categories)}


def category_hex(categories: pd.Index | list[str]) -> list[str]:
    """:func:`category_colors` as ``"#rrggbb"`` strings in the order of ``categories``: what
    scanpy reads from ``uns[f"{key}_colors"]``. The colour of a category depends only on its
    position in ``categories``, so pass every class (not only those present) to keep it the
    same across figures."""
    from matplotlib.colors import to_hex

    return [to_hex(color) for color in category_colors(list(categories)).values()]


def obs_palette(adata: AnnData, key: str) -> dict[str, str]:
    """Colours of the categories of ``adata.obs[key]``, kept in ``adata.uns[f"{key}_colors"]``
    as scanpy keeps them: read from there when it holds one colour per category, else made
    (:func:`category_hex` over every category, present or not) and stored, so every later
    figure of ``adata`` (spatial maps, embeddings, scanpy's own) colours a category the same."""
    values = adata.obs[key]
    cats = [
        str(c)
        for c in (
            values.cat.categories
            if isinstance(values.dtype, pd.CategoricalDtype)
            else sorted(values.dropna().astype(str).unique())
        )
    ]
    stored = adata.uns.get(f"{key}_colors")
    if stored is None or len(stored) != len(cats):
        stored = category_hex(cats)
        adata.uns[f"{key}_colors"] = list(stored)
    return dict(zip(cats, (str(c) for c in stored), strict=True))


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


_OBSM_TITLES = {
    "cell_type_fractions": "fraction of {}",
    "true_fractions": "true fraction of {}",
    "predicted_genes": "{} (predicted)",
    "view_weights": "weight of the {} view",
}


def human_title(key: str, *, layer: str | None = None, obs: bool = False) -> str:
    """A panel title a reader understands: ``"cell_type_fractions:CA1"`` -> ``"fraction of
    CA1"``, ``"<obsm>_fractions:T"`` -> ``"fraction of T (<obsm>)"``, other ``"obsm:col"`` ->
    ``"col (obsm)"``, a gene read from ``layer`` -> ``"gene (layer)"``; an ``obs`` column
    (``obs=True``) with spaces for underscores."""
    if ":" in key:
        obsm_key, column = key.split(":", 1)
        if obsm_key in _OBSM_TITLES:
            return _OBSM_TITLES[obsm_key].format(column)
        if obsm_key.endswith("_fractions"):
            return f"fraction of {column} ({obsm_key[: -len('_fractions')].replace('_', ' ')})"
        return f"{column} ({obsm_key.replace('_', ' ')})"
    if layer is not None:
        return f"{key} ({layer.replace('_', ' ')})"
    return key.replace("_", " ") if obs else key
