"""Bar charts of scores per method (e.g. median PCC/SSIM per imputation method)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._save import finish

__all__ = ["metric_bars"]


def metric_bars(
    scores: pd.DataFrame,
    *,
    title: str | None = None,
    save: str | Path | None = None,
):
    """One panel per metric (column), one bar per method (row).

    Parameters
    ----------
    scores
        Methods x metrics table of numbers.
    title
        Figure title.
    save
        Write the figure to this path and close it.
    """
    import matplotlib.pyplot as plt

    scores = scores.astype(float)
    n = scores.shape[1]
    fig, axes = plt.subplots(
        1, n, figsize=(max(3.0, 1.0 + 0.6 * len(scores)) * n, 3.6), squeeze=False
    )
    colors = plt.get_cmap("tab10")(np.arange(len(scores)) % 10)
    for ax, metric in zip(axes.flat, scores.columns, strict=True):
        ax.bar(range(len(scores)), scores[metric].to_numpy(), color=colors)
        ax.set_xticks(range(len(scores)), scores.index, rotation=45, ha="right")
        ax.set_title(str(metric))
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, save)
