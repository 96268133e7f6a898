"""Plots users would rather look at: spatial maps, embeddings, metric bars, mapping outputs
(``cellweave.pl``)."""

from ._save import save_figure
from .alignment import overlay
from .embedding import embedding
from .mapping import (
    fractions,
    fractions_vs_truth,
    mapping_plots,
    plot_paths,
    predicted_genes,
    view_weights,
)
from .metrics import metric_bars
from .spatial import spatial

__all__ = [
    "embedding",
    "fractions",
    "fractions_vs_truth",
    "mapping_plots",
    "metric_bars",
    "overlay",
    "plot_paths",
    "predicted_genes",
    "save_figure",
    "spatial",
    "view_weights",
]
