"""Metrics: gene-level prediction scores, distribution scores and integration scores.

* :mod:`~cellweave.metrics.spatial` - SpatialBenchmarking (Li et al. 2022) per-gene PCC,
  SSIM, RMSE and JS, the accuracy score (AS) ranking methods, held-out entry scores for
  imputation and cell-type fraction scores for deconvolution.
* :mod:`~cellweave.metrics.distributions` - Jensen-Shannon divergence (nats).
* :mod:`~cellweave.metrics.integration` - scib clustering / integration scores and FOSCTTM,
  built on :mod:`~cellweave.metrics.silhouette`, :mod:`~cellweave.metrics.lisi` and the kNN
  graphs of :mod:`~cellweave.metrics.neighbours` (inputs checked by
  :mod:`~cellweave.metrics.inputs`).
* :mod:`~cellweave.metrics.scib` - the scib-metrics 0.5.10 Benchmarker scores (Leiden, UMAP
  graphs, kBET from :mod:`~cellweave.metrics.kbet`, PCR comparison from
  :mod:`~cellweave.metrics.pcr`); :mod:`~cellweave.metrics.scib_reference` runs Benchmarker
  itself (optional scib-metrics) to check them.
* :mod:`~cellweave.metrics.label_transfer` - transferred-label scores and the 1 % protocol.
"""

from __future__ import annotations

from .distributions import js_divergence
from .integration import (
    ari,
    clisi,
    foscttm,
    graph_connectivity,
    ilisi,
    integration_scores,
    isolated_label_score,
    knn_graph,
    label_transfer_scores,
    lisi,
    nmi,
    silhouette_batch,
    silhouette_label,
    silhouette_samples,
)
from .spatial import (
    METRICS,
    accuracy_score,
    fraction_scores,
    gene_scores,
    js,
    masked_entry_scores,
    pcc,
    rmse,
    ssim,
)

__all__ = [
    "METRICS",
    "accuracy_score",
    "ari",
    "clisi",
    "foscttm",
    "fraction_scores",
    "gene_scores",
    "graph_connectivity",
    "ilisi",
    "integration_scores",
    "isolated_label_score",
    "js",
    "js_divergence",
    "knn_graph",
    "label_transfer_scores",
    "lisi",
    "masked_entry_scores",
    "nmi",
    "pcc",
    "rmse",
    "silhouette_batch",
    "silhouette_label",
    "silhouette_samples",
    "ssim",
]
