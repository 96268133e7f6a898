"""Plots of differential tests (``MosaicModel.differential``): volcano and dot plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MissingKeyError
from ._save import finish

__all__ = ["de_dotplot", "top_features", "volcano"]

_NEEDED = ("lfc_mean", "proba_de")


def _check(de: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in _NEEDED if c not in de.columns]
    if missing:
        raise MissingKeyError(
            f"the table lacks {missing}: pass the result of model.differential(...)"
        )
    if "group1" not in de.columns:  # a single comparison
        de = de.assign(group1="group1")
    return de


def volcano(
    de: pd.DataFrame,
    *,
    groups: Sequence[str] | None = None,
    n_labels: int = 6,
    ncols: int = 4,
    title: str | None = None,
    save: str | Path | None = None,
):
    """Volcano plot of a differential test: log2 fold change (``lfc_mean``) against the
    Bayes factor (``bayes_factor``, else the logit of ``proba_de``), one panel per group of a
    one-vs-rest table; features with ``is_de_fdr`` in colour, the ``n_labels`` most
    probable of them named (ties broken by the larger fold change).

    Parameters
    ----------
    de
        ``model.differential(...)`` (one comparison) or ``model.differential(groupby)``
        (one-vs-rest: a panel per ``group1``).
    groups
        Groups drawn (default: every group).
    n_labels
        Features named per panel.
    ncols
        Panels per row.
    title
        Figure title.
    save
        Write the figure to this path and close it.
    """
    import matplotlib.pyplot as plt

    de = _check(de)
    chosen = list(pd.unique(de["group1"])) if groups is None else list(groups)
    ncols = min(ncols, len(chosen))
    nrows = int(np.ceil(len(chosen) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.6 * nrows), squeeze=False)
    for ax, group in zip(axes.flat, chosen, strict=False):
        table = de[de["group1"] == group]
        x = table["lfc_mean"].to_numpy(dtype=float)
        p = np.clip(table["proba_de"].to_numpy(dtype=float), 1e-6, 1 - 1e-6)
        y = np.log(p / (1 - p))
        if "bayes_factor" in table:
            y = table["bayes_factor"].to_numpy(dtype=float)
        hit = table["is_de_fdr"].to_numpy(bool) if "is_de_fdr" in table else p > 0.95
        ax.scatter(x[~hit], y[~hit], s=8, c="0.7", linewidths=0, label="not DE")
        ax.scatter(
            x[hit],
            y[hit],
            s=10,
            c=np.where(x[hit] > 0, "#d62728", "#1f77b4"),
            linewidths=0,
            label="DE (FDR)",
        )
        for i in np.lexsort((-np.abs(x), -p))[: n_labels if hit.any() else 0]:
            if hit[i]:
                ax.annotate(
                    str(table.index[i]),
                    (x[i], y[i]),
                    fontsize=7,
                    xytext=(2, 2),
                    textcoords="offset points",
                )
        ax.axvline(0.0, color="0.5", lw=0.6)
        ax.set_xlabel("log2 fold change")
        ax.set_ylabel("Bayes factor")
        comparison = table["comparison"].iloc[0] if "comparison" in table else str(group)
        ax.set_title(str(comparison))
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, save)


def top_features(de: pd.DataFrame, n: int = 3, *, up: bool = True) -> dict[str, list[str]]:
    """The ``n`` most probably changed features of each group (up-regulated ones when
    ``up``), most probable first: what :func:`de_dotplot` shows."""
    de = _check(de)
    out = {}
    for group, table in de.groupby("group1", sort=False):
        table = table[table["lfc_mean"] > 0] if up else table
        order = table.sort_values(["proba_de", "lfc_mean"], ascending=False, kind="stable")
        out[str(group)] = [str(f) for f in order.index[:n]]
    return out


def de_dotplot(
    de: pd.DataFrame,
    *,
    n_features: int = 3,
    cmap: str = "RdBu_r",
    title: str | None = None,
    save: str | Path | None = None,
):
    """Dot plot of a one-vs-rest test: a row per group, a column per top feature (the
    ``n_features`` most probably up-regulated of each group, as
    ``sc.pl.rank_genes_groups_dotplot``); dot size ``proba_de``, colour ``lfc_mean`` on a
    scale symmetric around 0.

    Parameters
    ----------
    de
        ``model.differential(groupby)`` (one-vs-rest).
    n_features
        Features per group.
    cmap
        Diverging colour map of the fold change.
    title
        Figure title.
    save
        Write the figure to this path and close it.
    """
    import matplotlib.pyplot as plt

    de = _check(de)
    top = top_features(de, n_features)
    features = list(dict.fromkeys(f for names in top.values() for f in names))
    groups = list(top)
    lfc = np.full((len(groups), len(features)), np.nan)
    prob = np.zeros_like(lfc)
    for r, group in enumerate(groups):
        table = de[de["group1"] == group]
        table = table[~table.index.duplicated()]
        here = table.reindex(features)
        lfc[r], prob[r] = here["lfc_mean"].to_numpy(float), here["proba_de"].fillna(0).to_numpy()
    limit = float(np.nanmax(np.abs(lfc))) if np.isfinite(lfc).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(features), 1.0 + 0.4 * len(groups)))
    yy, xx = np.meshgrid(np.arange(len(groups)), np.arange(len(features)), indexing="ij")
    dots = ax.scatter(
        xx.ravel(),
        yy.ravel(),
        s=10 + 140 * prob.ravel(),
        c=lfc.ravel(),
        cmap=cmap,
        vmin=-limit,
        vmax=limit,
        edgecolors="0.3",
        linewidths=0.3,
    )
    ax.set_xticks(range(len(features)), features, rotation=90)
    ax.set_yticks(range(len(groups)), groups)
    ax.set_xlim(-0.6, len(features) - 0.4)
    ax.set_ylim(len(groups) - 0.4, -0.6)
    fig.colorbar(dots, ax=ax, fraction=0.05, pad=0.02, label="log2 fold change")
    for p in (0.5, 1.0):
        ax.scatter([], [], s=10 + 140 * p, c="0.6", label=f"P(DE) {p:g}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.25, 1), frameon=False, fontsize="small")
    ax.set_title(title or "top features per group vs rest")
    fig.tight_layout()
    return finish(fig, save)
