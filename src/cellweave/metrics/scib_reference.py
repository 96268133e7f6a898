"""scib-metrics' own ``Benchmarker``, run as the mosaic peers were scored, to check
:func:`cellweave.metrics.scib.scib_scores` (an optional dependency: ``pip install
'cellweave[bench]'``).

The configuration: Leiden NMI/ARI (k-means off), BRAS off, PCR comparison on with the
unintegrated embedding as ``pre_integrated_embedding_obsm_key``, the classic silhouette batch
added to the batch-correction metrics, ``get_results(min_max_scale=False)``; Total = 0.6 bio +
0.4 batch. Neighbours: scib-metrics' pynndescent (``random_state=0``), as Benchmarker does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BENCHMARKER_NAMES", "benchmarker_scores"]

#: Benchmarker's result columns (``clean_names=False``) -> :func:`scib_scores` keys.
BENCHMARKER_NAMES = {
    "nmi_ari_cluster_labels_leiden_nmi": "nmi",
    "nmi_ari_cluster_labels_leiden_ari": "ari",
    "silhouette_label": "asw_label",
    "clisi_knn": "clisi",
    "isolated_labels": "isolated_labels",
    "silhouette_batch": "asw_batch",
    "ilisi_knn": "ilisi",
    "kbet_per_label": "kbet",
    "graph_connectivity": "graph_connectivity",
    "pcr_comparison": "pcr_comparison",
    "Bio conservation": "bio",
    "Batch correction": "batch",
    "Total": "total",
}


def _configured():
    """Benchmarker and its metric collections with the classic silhouette batch added."""
    try:
        from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation, _core
    except ImportError as err:
        raise ImportError(
            "benchmarker_scores needs scib-metrics: pip install 'cellweave[bench]'"
        ) from err

    @dataclass(frozen=True)
    class WithSilhouetteBatch(BatchCorrection):
        silhouette_batch: bool = True

    api = _core.MetricAnnDataAPI
    if not hasattr(api, "silhouette_batch"):  # how Benchmarker calls it: X, labels, batch
        api.silhouette_batch = lambda ad, fn: fn(ad.X, ad.obs["labels"], ad.obs["batch"])
    bio = BioConservation(nmi_ari_cluster_labels_leiden=True, nmi_ari_cluster_labels_kmeans=False)
    batch = WithSilhouetteBatch(bras=False, pcr_comparison=True)
    return Benchmarker, bio, batch


def benchmarker_scores(
    embeddings: Mapping[str, Any], labels: Any, batches: Any, pre_embedding: Any
) -> dict[str, dict[str, float]]:
    """Scores of each embedding by scib-metrics 0.5.10's ``Benchmarker`` (configured as the
    module says), keyed as :func:`cellweave.metrics.scib.scib_scores`.

    Parameters
    ----------
    embeddings
        Name -> ``(n_cells, n_dims)`` embedding.
    labels, batches
        Cell type and batch per cell.
    pre_embedding
        The unintegrated ``(n_cells, n_dims_pre)`` embedding (for PCR comparison).

    Returns
    -------
    Name -> ``{key: value}`` with the keys of :data:`cellweave.metrics.scib.SCIB_PCR_KEYS`.
    """
    import anndata as ad
    import pandas as pd

    benchmarker, bio, batch = _configured()
    obs = pd.DataFrame(
        {"cell_type": np.asarray(labels).astype(str), "batch_key": np.asarray(batches).astype(str)}
    )
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_pre"] = np.asarray(pre_embedding, dtype=np.float32)
    for name, x in embeddings.items():
        adata.obsm[name] = np.asarray(x, dtype=np.float32)
    bm = benchmarker(
        adata,
        batch_key="batch_key",
        label_key="cell_type",
        embedding_obsm_keys=list(embeddings),
        bio_conservation_metrics=bio,
        batch_correction_metrics=batch,
        pre_integrated_embedding_obsm_key="X_pre",
        n_jobs=1,
        progress_bar=False,
    )
    bm.benchmark()
    table = bm.get_results(min_max_scale=False, clean_names=False)
    table = table.drop(index="Metric Type").rename(columns=BENCHMARKER_NAMES)
    return {
        name: {key: float(table.loc[name, key]) for key in BENCHMARKER_NAMES.values()}
        for name in embeddings
    }
