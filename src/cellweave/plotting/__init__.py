"""Plots users would rather look at: spatial maps, embeddings, metric bars, mapping outputs
(``cellweave.pl``)."""

from ._colors import category_hex, human_title, obs_palette
from ._save import save_figure
from .alignment import overlay
from .differential import de_dotplot, top_features, volcano
from .embedding import embedding, umap_coordinates
from .genes import informative_gene, morans_i
from .graph import spatial_graph
from .history import history
from .mapping import (
    fractions,
    fractions_vs_truth,
    mapping_plots,
    plot_paths,
    predicted_genes,
    view_weights,
)
from .metrics import metric_bars, summarize_scores
from .spatial import spatial

__all__ = [
    "category_hex",
    "de_dotplot",
    "embedding",
    "fractions",
    "fractions_vs_truth",
    "history",
    "human_title",
    "informative_gene",
    "mapping_plots",
    "metric_bars",
    "morans_i",
    "obs_palette",
    "overlay",
    "plot_paths",
    "predicted_genes",
    "save_figure",
    "spatial",
    "spatial_graph",
    "summarize_scores",
    "top_features",
    "umap_coordinates",
    "view_weights",
    "volcano",
]
