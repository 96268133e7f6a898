"""Saving figures atomically."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ..io import atomic_path

__all__ = ["finish", "save_figure"]


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Save ``fig`` to ``path`` (format from the suffix) via a temp file and rename."""
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return path


def finish(fig: Figure, save: str | Path | None, *, close: bool | None = None) -> Figure:
    """Save ``fig`` when ``save`` is given; close it when saved unless ``close=False``."""
    if save is not None:
        save_figure(fig, save)
        if close is not False:
            import matplotlib.pyplot as plt

            plt.close(fig)
    return fig
