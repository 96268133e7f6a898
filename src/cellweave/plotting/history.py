"""Loss curves of a training run (``cw.pl.history``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ._save import finish

__all__ = ["history"]

#: A curve spanning more than this ratio (max / min, all positive) is drawn on a log axis.
LOG_RATIO = 100.0


def _frame(source: Any) -> pd.DataFrame:
    """The per-epoch table of a model, a fit result or a DataFrame."""
    frame = getattr(source, "history", source)
    if isinstance(frame, list):  # a module's list of rows
        frame = pd.DataFrame(frame)
    if not isinstance(frame, pd.DataFrame):
        raise InputError(
            f"pl.history takes a trained model, a FitResult or a DataFrame, not "
            f"{type(source).__name__}: train the model first or pass model.history"
        )
    if frame.empty:
        raise InputError("the history is empty: train the model (at least one epoch) first")
    return frame


def history(
    model_or_df: Any,
    *,
    terms: bool = True,
    log: bool | None = None,
    title: str | None = "training history",
    ax: Any = None,
    save: str | Path | None = None,
):
    """Loss curves per epoch: the training loss (solid), ``val_loss`` (dashed) and, with
    ``terms``, every other training term (thin).

    Parameters
    ----------
    model_or_df
        A trained model (``model.history``), a :class:`cellweave.train.FitResult` or the
        DataFrame itself (one row per epoch; columns ``loss``, ``val_loss`` and the terms;
        ``seconds`` and ``epoch`` are not drawn).
    terms
        Also draw the loss terms besides ``loss`` and ``val_loss``.
    log
        Log-scale y axis; default: when the drawn values are all positive and span more
        than two decades (:data:`LOG_RATIO`).
    title
        Axes title.
    ax
        Draw into this matplotlib axes (default: a new figure).
    save
        Write the figure to this path (PNG) and close it.

    Returns
    -------
    The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    frame = _frame(model_or_df)
    epochs = (
        frame["epoch"].to_numpy()
        if "epoch" in frame.columns
        else np.asarray(frame.index, dtype=float)
    )
    main = [c for c in ("loss", "val_loss") if c in frame.columns]
    extra = [c for c in frame.columns if c not in (*main, "epoch", "seconds")] if terms else []
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 3.8))
    else:
        fig = ax.figure
    drawn: list[np.ndarray] = []
    for column in [*main, *extra]:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(values)
        if not ok.any():
            continue
        style = {"loss": ("-", 2.0), "val_loss": ("--", 2.0)}.get(column, ("-", 0.9))
        label = {"loss": "train loss", "val_loss": "validation loss"}.get(column, column)
        ax.plot(epochs[ok], values[ok], style[0], lw=style[1], label=label, marker=None)
        drawn.append(values[ok])
    if not drawn:
        raise InputError("the history holds no finite loss values to plot")
    every = np.concatenate(drawn)
    if log is None:
        log = bool(every.min() > 0 and every.max() / every.min() > LOG_RATIO)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (log scale)" if log else "loss")
    if title:
        ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return finish(fig, save)
