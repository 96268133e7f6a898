"""Bar charts of scores per method (e.g. held-out deviance per imputation method)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MissingKeyError
from ._colors import category_hex
from ._save import finish

__all__ = ["metric_bars", "summarize_scores"]


def summarize_scores(
    scores: pd.DataFrame, *, reference: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and standard deviation per method (index) of each numeric column; a method on
    several rows (one per seed) gives its seed spread, one row a spread of 0. With
    ``reference``, every value is divided by the reference method's mean of its column
    (ratios: 1 = as good as the reference) and the reference row is dropped."""
    numeric = scores.select_dtypes("number").astype(float)
    grouped = numeric.groupby(level=0, sort=False)
    mean, std = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    if reference is not None:
        if reference not in mean.index:
            raise MissingKeyError(
                f"reference {reference!r} is not a method of the scores; use one of "
                f"{list(mean.index)}"
            )
        base = mean.loc[reference].replace(0.0, np.nan)
        mean, std = mean.drop(index=reference) / base, std.drop(index=reference) / base.abs()
    return mean, std


def metric_bars(
    scores: pd.DataFrame,
    *,
    reference: str | None = None,
    lower_is_better: bool | Mapping[str, bool] = True,
    sort: bool = True,
    title: str | None = None,
    save: str | Path | None = None,
):
    """One panel per metric (column), one bar per method (row), best first, with seed error
    bars.

    Parameters
    ----------
    scores
        Methods (index) x metrics table of numbers. A method on several rows (one per seed,
        e.g. ``ImputeEvaluation.per_seed.set_index("method")``) is drawn as its mean with a
        +- one standard deviation error bar.
    reference
        A method (e.g. ``"raw"``) to divide every score by: the bars show ratios to it (a
        dashed line at 1), so a reference far worse than the rest does not flatten their
        differences; it gets no bar of its own.
    lower_is_better
        Sort direction, for every metric or per metric name.
    sort
        Sort the bars of each panel best first.
    title
        Figure title.
    save
        Write the figure to this path and close it.

    Returns
    -------
    The matplotlib figure. Each method keeps one colour in every panel.
    """
    import matplotlib.pyplot as plt

    mean, std = summarize_scores(scores, reference=reference)
    methods = list(mean.index)
    colors = dict(zip(methods, category_hex(methods), strict=True))
    n = mean.shape[1]
    width = max(3.0, 1.0 + 0.5 * len(methods))
    fig, axes = plt.subplots(1, n, figsize=(width * n, 3.8), squeeze=False)
    for ax, metric in zip(axes.flat, mean.columns, strict=True):
        lower = (
            lower_is_better.get(metric, True)
            if isinstance(lower_is_better, Mapping)
            else lower_is_better
        )
        order = mean[metric].sort_values(ascending=lower, kind="stable").index if sort else methods
        ax.bar(
            range(len(order)),
            mean.loc[order, metric].to_numpy(),
            yerr=std.loc[order, metric].to_numpy(),
            color=[colors[m] for m in order],
            capsize=3,
            error_kw={"elinewidth": 1},
        )
        ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
        better = "lower" if lower else "higher"
        if reference is not None:
            ax.axhline(1.0, color="0.3", ls="--", lw=1)
            ax.set_ylabel(f"ratio to {reference} ({better} is better)")
            _zoom(ax, mean.loc[order, metric], std.loc[order, metric])
        else:
            ax.set_ylabel(f"{better} is better")
        ax.set_title(str(metric))
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, save)


def _zoom(ax, mean: pd.Series, std: pd.Series) -> None:
    """Fit the y range to the ratios (and the line at 1) instead of starting at 0, so that
    differences of a few percent between methods are visible."""
    low = float(np.nanmin(np.append((mean - std).to_numpy(), 1.0)))
    high = float(np.nanmax(np.append((mean + std).to_numpy(), 1.0)))
    pad = 0.08 * (high - low) or 0.05
    ax.set_ylim(max(0.0, low - pad), high + pad)
