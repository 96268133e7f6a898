"""Plots users would rather look at: spatial maps, embeddings, metric bars (``cellweave.pl``)."""

from ._save import save_figure
from .alignment import overlay
from .embedding import embedding
from .metrics import metric_bars
from .spatial import spatial

__all__ = ["embedding", "metric_bars", "overlay", "save_figure", "spatial"]
