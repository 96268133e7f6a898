"""Clustering, integration and label-transfer scores (scib definitions, numpy/sklearn only).

Definitions follow scib (Luecken et al. 2022, *Benchmarking atlas-level data integration in
single-cell genomics*, Nature Methods 19, 41-50; github.com/theislab/scib) and, where scib
needs R or igraph, the numpy-friendly variants of scib-metrics (github.com/YosefLab/
scib-metrics). All scores are on Euclidean distances in the given embedding; k-nearest
neighbour graphs are sparse (exact, ``cellweave.graph.nearest_neighbors``, self excluded). The
silhouettes are the only quadratic part (all pairwise distances, computed in row chunks with
BLAS and never stored whole): about 2 s for 10k cells on 2 cores, so subsample beyond ~50k.

Scaled scores lie in [0, 1] with higher better:

``silhouette_label``
    ``(ASW + 1) / 2`` of the cell-type labels (scib ``silhouette``).
``silhouette_batch``
    Within each cell type with >= 2 batches (and fewer batches than cells), the mean of
    ``1 - |s_i|`` over its cells, where ``s_i`` is the silhouette of cell ``i`` w.r.t. batch;
    then the mean over cell types (scib ``silhouette_batch``).
``graph_connectivity``
    Mean over cell types of the fraction of that type's cells in the largest connected
    component of the kNN graph restricted to the type (scib). The graph is the symmetrised
    kNN graph, i.e. the sparsity pattern of scanpy's ``connectivities``.
``isolated_label_score``
    Labels present in the fewest batches are "isolated"; the score is the mean over them of
    their cells' mean rescaled silhouette ``(s_i + 1) / 2`` w.r.t. all labels (scib-metrics
    ``isolated_labels``, the ASW variant of scib's isolated-label score).
``ilisi`` / ``clisi``
    Local inverse Simpson's index (Korsunsky et al. 2019) with the perplexity-calibrated
    Gaussian kernel over each cell's ``n_neighbors`` nearest neighbours (perplexity
    ``n_neighbors // 3``, as in scib-metrics), median over cells, scaled as in scib:
    ``(iLISI - 1) / (n_batches - 1)`` and ``(n_labels - cLISI) / (n_labels - 1)``.
``nmi`` / ``ari``
    Between two labelings (sklearn; NMI with arithmetic normalisation as scib). In
    :func:`integration_scores` they compare the labels with k-means clusters of the
    embedding, ``k`` = number of labels (scib-metrics ``nmi_ari_cluster_labels_kmeans``;
    scib optimises a Louvain resolution instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from .._utils import RandomState, check_random_state
from ..errors import EmptyDataError, InputError
from .distributions import as_label_array
from .inputs import CHUNK_ELEMENTS, embedding_array, scored_inputs
from .label_transfer import label_transfer_scores
from .lisi import clisi, ilisi, lisi, lisi_from_knn, scaled_clisi, scaled_ilisi
from .neighbours import (
    graph_connectivity,
    graph_connectivity_from_codes,
    graph_from_knn,
    knn_graph,
    knn_lists,
)
from .silhouette import (
    isolated_label_from_silhouette,
    isolated_label_score,
    silhouette_batch,
    silhouette_from_codes,
    silhouette_label,
    silhouette_samples,
)

__all__ = [
    "ari",
    "clisi",
    "foscttm",
    "graph_connectivity",
    "ilisi",
    "integration_scores",
    "isolated_label_score",
    "knn_graph",
    "label_transfer_scores",
    "lisi",
    "nmi",
    "silhouette_batch",
    "silhouette_label",
    "silhouette_samples",
]

BIO_METRICS = ("NMI", "ARI", "silhouette_label", "cLISI", "isolated_label")
BATCH_METRICS = ("silhouette_batch", "iLISI", "graph_connectivity")

# --------------------------------------------------------------------------------------
# Labelings
# --------------------------------------------------------------------------------------


def ari(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index between two labelings (1 = identical partitions, ~0 = random)."""
    t = as_label_array(labels_true, "labels_true")
    p = as_label_array(labels_pred, "labels_pred", t.shape[0])
    return float(adjusted_rand_score(t, p))


def nmi(labels_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information (arithmetic normalisation, as scib), in [0, 1]."""
    t = as_label_array(labels_true, "labels_true")
    p = as_label_array(labels_pred, "labels_pred", t.shape[0])
    return float(normalized_mutual_info_score(t, p, average_method="arithmetic"))


# --------------------------------------------------------------------------------------
# Paired embeddings
# --------------------------------------------------------------------------------------


def _closer_than_match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row ``i`` of ``a``: fraction of rows ``j != i`` of ``b`` closer than ``b[i]``."""
    n = a.shape[0]
    out = np.empty(n)
    step = max(1, CHUNK_ELEMENTS // n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        d = cdist(a[start:stop], b)
        local = np.arange(stop - start)
        true_d = d[local, np.arange(start, stop)]
        out[start:stop] = (d < true_d[:, None]).sum(axis=1) / (n - 1)
    return out


def foscttm(x: Any, y: Any, *, per_sample: bool = False) -> float | np.ndarray:
    """Fraction Of Samples Closer Than the True Match, for paired embeddings.

    Row ``i`` of ``x`` and row ``i`` of ``y`` embed the same cell (e.g. its RNA and ATAC
    profiles in a joint space). For each cell ``i`` and each direction, the fraction of the
    other ``n - 1`` cells of the other modality that lie strictly closer (Euclidean) than the
    true match is computed; the two directions are averaged (SCOT / Demetci et al. 2022).

    Parameters
    ----------
    x, y
        ``(n_cells, n_dims)`` embeddings of the two modalities, rows paired.
    per_sample
        Return the per-cell values instead of their mean.

    Returns
    -------
    Mean FOSCTTM in [0, 1] (0 = every cell is closest to its own match, ~0.5 = random).
    """
    a, b = embedding_array(x, "x"), embedding_array(y, "y")
    if a.shape != b.shape:
        raise InputError(
            f"x has shape {a.shape} but y has shape {b.shape}: FOSCTTM needs paired rows in "
            "a shared space of the same dimension"
        )
    if a.shape[0] < 2:
        raise EmptyDataError("FOSCTTM needs at least 2 paired cells; pass more cells")
    values = 0.5 * (_closer_than_match(a, b) + _closer_than_match(b, a))
    return values if per_sample else float(values.mean())


# --------------------------------------------------------------------------------------
# Bundle
# --------------------------------------------------------------------------------------


def integration_scores(
    embedding: Any,
    labels: Any,
    batches: Any,
    *,
    n_neighbors: int = 15,
    lisi_neighbors: int = 90,
    random_state: RandomState = 0,
) -> pd.Series:
    """scib-style bio-conservation and batch-correction scores of an integrated embedding.

    Parameters
    ----------
    embedding
        ``(n_cells, n_dims)`` integrated embedding (e.g. ``adata.obsm["X_emb"]``).
    labels
        Cell-type label per cell.
    batches
        Batch (sample, technology, modality) per cell; at least 2 distinct values.
    n_neighbors
        Neighbours of the kNN graph used for graph connectivity.
    lisi_neighbors
        Neighbours for iLISI/cLISI (perplexity ``lisi_neighbors // 3``).
    random_state
        Seed of the k-means clustering used for NMI/ARI.

    Returns
    -------
    Series with the bio-conservation metrics ``NMI``, ``ARI``, ``silhouette_label``,
    ``cLISI``, ``isolated_label``; the batch-correction metrics ``silhouette_batch``,
    ``iLISI``, ``graph_connectivity``; their (NaN-aware) means ``bio_conservation`` and
    ``batch_correction``; and ``overall = 0.6 * bio_conservation + 0.4 * batch_correction``
    as in scib. All in [0, 1], higher is better.
    """
    x, lab, n_lab, bat, n_bat = scored_inputs(embedding, labels, batches, "integration_scores")
    rng = check_random_state(random_state)

    clusters = KMeans(
        n_clusters=n_lab, n_init=3, random_state=int(rng.integers(2**31 - 1))
    ).fit_predict(x)
    sil = silhouette_from_codes(x, lab, n_lab)
    dist, idx = knn_lists(x, max(n_neighbors, lisi_neighbors))
    k_lisi = min(lisi_neighbors, idx.shape[1])
    graph = graph_from_knn(idx[:, : min(n_neighbors, idx.shape[1])])
    d_l, i_l = dist[:, :k_lisi], idx[:, :k_lisi]

    scores = {
        "NMI": normalized_mutual_info_score(lab, clusters, average_method="arithmetic"),
        "ARI": adjusted_rand_score(lab, clusters),
        "silhouette_label": (sil.mean() + 1.0) / 2.0,
        "cLISI": scaled_clisi(lisi_from_knn(d_l, i_l, lab, n_lab, None), n_lab, True),
        "isolated_label": isolated_label_from_silhouette(sil, lab, bat, n_lab, None, True),
        "silhouette_batch": silhouette_batch(x, lab, bat),
        "iLISI": scaled_ilisi(lisi_from_knn(d_l, i_l, bat, n_bat, None), n_bat, True),
        "graph_connectivity": graph_connectivity_from_codes(graph, lab, n_lab),
    }
    out = pd.Series(scores, dtype=np.float64)
    out["bio_conservation"] = out[list(BIO_METRICS)].mean()
    out["batch_correction"] = out[list(BATCH_METRICS)].mean()
    out["overall"] = 0.6 * out["bio_conservation"] + 0.4 * out["batch_correction"]
    return out
