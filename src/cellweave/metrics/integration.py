"""Clustering, integration and label-transfer scores (scib definitions, numpy/sklearn only).

Definitions follow scib (Luecken et al. 2022, *Benchmarking atlas-level data integration in
single-cell genomics*, Nature Methods 19, 41-50; github.com/theislab/scib) and, where scib
needs R or igraph, the numpy-friendly variants of scib-metrics (github.com/YosefLab/
scib-metrics). All scores are on Euclidean distances in the given embedding; k-nearest
neighbour graphs are sparse (``sklearn.neighbors.NearestNeighbors``, self excluded). The
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
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score
from sklearn.neighbors import NearestNeighbors

from .._utils import RandomState, check_random_state
from ..errors import EmptyDataError, InputError
from .distributions import as_label_array, as_matrix

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

#: Elements of one distance chunk (rows x n) in silhouette / FOSCTTM (~64 MB of float64).
_CHUNK_ELEMENTS = 8_000_000

BIO_METRICS = ("NMI", "ARI", "silhouette_label", "cLISI", "isolated_label")
BATCH_METRICS = ("silhouette_batch", "iLISI", "graph_connectivity")


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _embedding(x: Any, name: str = "embedding") -> np.ndarray:
    mat, _, _ = as_matrix(x, name)
    return mat.toarray() if sparse.issparse(mat) else mat


def _codes(labels: Any, name: str, n: int) -> tuple[np.ndarray, int]:
    """Integer codes ``0..k-1`` and ``k`` for a label vector of length ``n``."""
    codes, uniques = pd.factorize(as_label_array(labels, name, n), sort=True)
    return codes.astype(np.intp), len(uniques)


def _scored_inputs(
    embedding: Any, labels: Any, batches: Any, what: str
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, int]:
    """Embedding, label codes and count, batch codes and count for the score bundle
    ``what``; labels and batches must each have 2 or more values, fewer than the cells."""
    x = _embedding(embedding)
    n = x.shape[0]
    lab, n_lab = _codes(labels, "labels", n)
    bat, n_bat = _codes(batches, "batches", n)
    _need_groups(n_lab, n, "labels", what)
    _need_groups(n_bat, n, "batches", what)
    return x, lab, n_lab, bat, n_bat


def _need_groups(k: int, n: int, name: str, what: str) -> None:
    if k < 2:
        raise InputError(
            f"{name} has a single value: {what} needs at least 2 distinct {name}; check "
            f"that you passed the right column"
        )
    if k >= n:
        raise InputError(
            f"{name} has as many distinct values as observations ({n}): {what} needs groups "
            "with several observations; check that you passed the right column"
        )


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


def label_transfer_scores(true: Any, pred: Any) -> dict[str, float]:
    """Accuracy, macro F1 and balanced accuracy of transferred labels.

    Parameters
    ----------
    true, pred
        Reference and transferred labels, one per cell. Labels are compared as strings, so
        ``1`` and ``"1"`` match.

    Returns
    -------
    dict with ``accuracy`` (fraction correct), ``macro_f1`` (unweighted mean F1 over the
    **true** classes; predicted-only classes such as "unassigned" count as errors but get no
    class of their own) and ``balanced_accuracy`` (mean recall over the true classes).
    """
    t = as_label_array(true, "true").astype(str)
    p = as_label_array(pred, "pred", t.shape[0]).astype(str)
    if t.size == 0:
        raise EmptyDataError("true is empty: pass at least one label")
    classes = np.unique(t)
    correct = t == p
    recall = np.array([correct[t == c].mean() for c in classes])
    f1 = f1_score(t, p, labels=classes, average="macro", zero_division=0.0)
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1),
        "balanced_accuracy": float(recall.mean()),
    }


# --------------------------------------------------------------------------------------
# Silhouettes
# --------------------------------------------------------------------------------------


def _silhouette_codes(x: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Silhouette per observation (Euclidean) for integer labels ``0..k-1``.

    Matches ``sklearn.metrics.silhouette_samples``: ``s = (b - a) / max(a, b)`` with ``a`` the
    mean distance to the other members of the own cluster, ``b`` the smallest mean distance
    to another cluster; 0 for members of singleton clusters.
    """
    n = x.shape[0]
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), codes] = 1.0
    sq = np.einsum("ij,ij->i", x, x)
    xt = np.ascontiguousarray(x.T)
    out = np.empty(n)
    step = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        local = np.arange(stop - start)
        # squared distances |a|^2 + |b|^2 - 2 a.b, built in place to avoid temporaries
        d = x[start:stop] @ xt
        d *= -2.0
        d += sq[start:stop, None]
        d += sq[None, :]
        np.maximum(d, 0.0, out=d)
        np.sqrt(d, out=d)
        d[local, np.arange(start, stop)] = 0.0
        sums = d @ onehot
        own = codes[start:stop]
        own_count = counts[own]
        a = sums[local, own] / np.maximum(own_count - 1, 1.0)
        mean_other = sums / counts
        mean_other[local, own] = np.inf
        b = mean_other.min(axis=1)
        denom = np.maximum(a, b)
        s = np.divide(b - a, denom, out=np.zeros_like(a), where=denom > 0)
        s[own_count <= 1] = 0.0
        out[start:stop] = s
    return out


def silhouette_samples(embedding: Any, labels: Any) -> np.ndarray:
    """Silhouette width of each observation w.r.t. ``labels`` (Euclidean), in [-1, 1].

    Same values as ``sklearn.metrics.silhouette_samples`` but computed in chunks with a
    matrix product, which is several times faster on large data.
    """
    x = _embedding(embedding)
    codes, k = _codes(labels, "labels", x.shape[0])
    _need_groups(k, x.shape[0], "labels", "a silhouette")
    return _silhouette_codes(x, codes, k)


def silhouette_label(embedding: Any, labels: Any, *, rescale: bool = True) -> float:
    """Cell-type ASW (scib ``silhouette``): mean silhouette, rescaled to [0, 1] by default.

    Higher is better: 1 = compact, well-separated cell types.
    """
    asw = float(silhouette_samples(embedding, labels).mean())
    return (asw + 1.0) / 2.0 if rescale else asw


def silhouette_batch(embedding: Any, labels: Any, batches: Any, *, rescale: bool = True) -> float:
    """Batch ASW (scib ``silhouette_batch``): batch mixing within each cell type.

    For each label with at least 2 batches (and fewer batches than cells), the silhouette of
    its cells w.r.t. batch is computed within that label; the score of the label is the mean
    of ``1 - |s|`` (``|s|`` without ``rescale``), and the result is the mean over labels.
    With ``rescale`` higher is better: 1 = batches perfectly mixed, 0 = fully separated.
    Returns NaN when no label qualifies.
    """
    x = _embedding(embedding)
    n = x.shape[0]
    lab, n_lab = _codes(labels, "labels", n)
    bat, _ = _codes(batches, "batches", n)
    per_label = []
    for g in range(n_lab):
        idx = np.flatnonzero(lab == g)
        sub_codes, sub_k = _codes(bat[idx], "batches", idx.size)
        if sub_k == 1 or sub_k == idx.size:
            continue
        s = np.abs(_silhouette_codes(x[idx], sub_codes, sub_k))
        per_label.append(float((1.0 - s).mean() if rescale else s.mean()))
    return float(np.mean(per_label)) if per_label else float("nan")


def _isolated_labels(
    lab: np.ndarray, bat: np.ndarray, n_lab: int, threshold: int | None
) -> np.ndarray:
    """Label codes present in at most ``threshold`` batches (default: the minimum count)."""
    pairs = np.unique(np.stack([lab, bat], axis=1), axis=0)
    batches_per_label = np.bincount(pairs[:, 0], minlength=n_lab)
    if threshold is None:
        threshold = int(batches_per_label.min())
    return np.flatnonzero(batches_per_label <= threshold)


def isolated_label_score(
    embedding: Any,
    labels: Any,
    batches: Any,
    *,
    iso_threshold: int | None = None,
    rescale: bool = True,
) -> float:
    """Isolated-label ASW (scib-metrics ``isolated_labels``).

    Labels present in at most ``iso_threshold`` batches (default: the smallest number of
    batches any label is present in) are isolated. For each, the mean over its cells of the
    silhouette w.r.t. all labels (rescaled ``(s + 1) / 2``) is taken; the score is the mean
    over isolated labels. Higher is better. If every label is in every batch, all labels
    count as isolated (as in scib).
    """
    x = _embedding(embedding)
    n = x.shape[0]
    lab, n_lab = _codes(labels, "labels", n)
    bat, _ = _codes(batches, "batches", n)
    _need_groups(n_lab, n, "labels", "the isolated-label score")
    sil = _silhouette_codes(x, lab, n_lab)
    return _isolated_from_silhouette(sil, lab, bat, n_lab, iso_threshold, rescale)


def _isolated_from_silhouette(
    sil: np.ndarray,
    lab: np.ndarray,
    bat: np.ndarray,
    n_lab: int,
    iso_threshold: int | None,
    rescale: bool,
) -> float:
    if rescale:
        sil = (sil + 1.0) / 2.0
    iso = _isolated_labels(lab, bat, n_lab, iso_threshold)
    if iso.size == 0:
        return float("nan")
    return float(np.mean([sil[lab == g].mean() for g in iso]))


# --------------------------------------------------------------------------------------
# kNN graph based scores
# --------------------------------------------------------------------------------------


def _knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of the ``k`` nearest neighbours of each row, self excluded."""
    n = x.shape[0]
    if n < 2:
        raise EmptyDataError("a kNN graph needs at least 2 observations; pass more cells")
    k = min(k, n - 1)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    is_self = idx == np.arange(n)[:, None]
    # With duplicated points self may be missing from the list: drop the farthest instead.
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True
    first = np.argmax(is_self, axis=1)
    is_self[:] = False
    is_self[np.arange(n), first] = True
    keep = ~is_self
    return dist[keep].reshape(n, k), idx[keep].reshape(n, k)


def knn_graph(embedding: Any, *, n_neighbors: int = 15) -> sparse.csr_matrix:
    """Symmetric binary kNN graph (CSR): an edge wherever either cell is a neighbour of the other.

    This is the sparsity pattern of scanpy's ``connectivities`` for the same ``n_neighbors``
    (scanpy counts the cell itself, so use ``n_neighbors - 1`` here to match it exactly).
    """
    x = _embedding(embedding)
    _, idx = _knn(x, n_neighbors)
    return _graph_from_knn(idx)


def _graph_from_knn(idx: np.ndarray) -> sparse.csr_matrix:
    n, k = idx.shape
    rows = np.repeat(np.arange(n), k)
    g = sparse.csr_matrix((np.ones(n * k), (rows, idx.ravel())), shape=(n, n))
    g = ((g + g.T) > 0).astype(np.float64)
    return sparse.csr_matrix(g)


def graph_connectivity(embedding_or_graph: Any, labels: Any, *, n_neighbors: int = 15) -> float:
    """Graph connectivity (scib): how well each cell type stays connected in the kNN graph.

    Parameters
    ----------
    embedding_or_graph
        ``(n_cells, n_dims)`` embedding (a symmetric kNN graph with ``n_neighbors`` is built)
        or a precomputed ``(n_cells, n_cells)`` sparse graph such as
        ``adata.obsp["connectivities"]``.
    labels
        Cell-type label per cell.
    n_neighbors
        Neighbours per cell when building the graph.

    Returns
    -------
    Mean over labels of (cells in the label's largest connected component) / (cells of the
    label), in (0, 1]; 1 when every label forms one connected piece.
    """
    if sparse.issparse(embedding_or_graph):
        g = sparse.csr_matrix(embedding_or_graph)
        if g.shape[0] != g.shape[1]:
            raise InputError(
                f"a sparse input must be a square (n_cells, n_cells) graph, got shape "
                f"{g.shape}; pass a dense embedding or adata.obsp['connectivities']"
            )
    else:
        g = knn_graph(embedding_or_graph, n_neighbors=n_neighbors)
    lab, n_lab = _codes(labels, "labels", g.shape[0])
    return _graph_connectivity_codes(g, lab, n_lab)


def _graph_connectivity_codes(g: sparse.csr_matrix, lab: np.ndarray, n_lab: int) -> float:
    fractions = []
    for c in range(n_lab):
        idx = np.flatnonzero(lab == c)
        sub = g[idx][:, idx]
        _, comp = connected_components(sub, directed=True, connection="strong")
        fractions.append(np.bincount(comp).max() / idx.size)
    return float(np.mean(fractions))


def _neighbor_probabilities(
    dist: np.ndarray, perplexity: float, tol: float = 1e-5, max_iter: int = 50
) -> np.ndarray:
    """Row-wise Gaussian kernel ``exp(-beta d)`` whose entropy matches ``log(perplexity)``.

    The bisection on ``beta`` is the one of Harmony's LISI / scib-metrics, run on all rows
    at once. Distances are shifted by each row's minimum, which leaves the normalised
    probabilities and the entropy unchanged but avoids underflow.
    """
    n = dist.shape[0]
    d = dist - dist.min(axis=1, keepdims=True)
    target = np.log(perplexity)
    beta = np.ones(n)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)

    def entropy(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.exp(-d * b[:, None])
        total = w.sum(axis=1)  # >= 1: the nearest neighbour has weight exp(0)
        h = np.log(total) + b * (d * w).sum(axis=1) / total
        return h, w / total[:, None]

    h, p = entropy(beta)
    for _ in range(max_iter):
        diff = h - target
        active = np.abs(diff) > tol
        if not active.any():
            break
        up = active & (diff > 0)
        down = active & ~(diff > 0)
        lo[up] = beta[up]
        beta[up] = np.where(np.isinf(hi[up]), beta[up] * 2.0, (beta[up] + hi[up]) / 2.0)
        hi[down] = beta[down]
        beta[down] = np.where(np.isinf(lo[down]), beta[down] / 2.0, (beta[down] + lo[down]) / 2.0)
        h, p = entropy(beta)
    return p


def _lisi_from_knn(
    dist: np.ndarray, idx: np.ndarray, codes: np.ndarray, n_groups: int, perplexity: float | None
) -> np.ndarray:
    """Per-cell LISI from a kNN result (self excluded) and integer group codes."""
    n, n_nb = idx.shape
    if perplexity is None:
        perplexity = max(1.0, float(n_nb // 3))
    p = _neighbor_probabilities(dist, perplexity)
    rows = np.repeat(np.arange(n), n_nb)
    per_label = sparse.csr_matrix((p.ravel(), (rows, codes[idx].ravel())), shape=(n, n_groups))
    simpson = np.asarray(per_label.multiply(per_label).sum(axis=1)).ravel()
    return 1.0 / simpson


def lisi(
    embedding: Any, labels: Any, *, n_neighbors: int = 90, perplexity: float | None = None
) -> np.ndarray:
    """Local inverse Simpson's index of ``labels`` per cell (Korsunsky et al. 2019).

    For each cell, neighbour weights ``exp(-beta d)`` over its ``n_neighbors`` nearest
    neighbours are calibrated so that their perplexity is ``perplexity`` (default
    ``n_neighbors // 3``, as scib-metrics; scib uses 90 neighbours and perplexity 30); LISI
    is ``1 / sum_l (sum of weights of neighbours with label l)^2``, the effective number of
    labels around the cell, in ``[1, n_labels]``.
    """
    x = _embedding(embedding)
    codes, k = _codes(labels, "labels", x.shape[0])
    dist, idx = _knn(x, n_neighbors)
    return _lisi_from_knn(dist, idx, codes, k, perplexity)


def ilisi(
    embedding: Any,
    batches: Any,
    *,
    n_neighbors: int = 90,
    perplexity: float | None = None,
    scale: bool = True,
) -> float:
    """Integration LISI: median batch LISI, scaled to [0, 1] (1 = batches fully mixed)."""
    x = _embedding(embedding)
    codes, k = _codes(batches, "batches", x.shape[0])
    _need_groups(k, x.shape[0], "batches", "iLISI")
    dist, idx = _knn(x, n_neighbors)
    return _scaled_ilisi(_lisi_from_knn(dist, idx, codes, k, perplexity), k, scale)


def clisi(
    embedding: Any,
    labels: Any,
    *,
    n_neighbors: int = 90,
    perplexity: float | None = None,
    scale: bool = True,
) -> float:
    """Cell-type LISI: median label LISI, scaled to [0, 1] (1 = neighbourhoods are pure)."""
    x = _embedding(embedding)
    codes, k = _codes(labels, "labels", x.shape[0])
    _need_groups(k, x.shape[0], "labels", "cLISI")
    dist, idx = _knn(x, n_neighbors)
    return _scaled_clisi(_lisi_from_knn(dist, idx, codes, k, perplexity), k, scale)


def _scaled_ilisi(values: np.ndarray, k: int, scale: bool) -> float:
    med = float(np.median(values))
    return (med - 1.0) / (k - 1.0) if scale else med


def _scaled_clisi(values: np.ndarray, k: int, scale: bool) -> float:
    med = float(np.median(values))
    return (k - med) / (k - 1.0) if scale else med


# --------------------------------------------------------------------------------------
# Paired embeddings
# --------------------------------------------------------------------------------------


def _closer_than_match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row ``i`` of ``a``: fraction of rows ``j != i`` of ``b`` closer than ``b[i]``."""
    n = a.shape[0]
    out = np.empty(n)
    step = max(1, _CHUNK_ELEMENTS // n)
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
    a, b = _embedding(x, "x"), _embedding(y, "y")
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
    x, lab, n_lab, bat, n_bat = _scored_inputs(embedding, labels, batches, "integration_scores")
    rng = check_random_state(random_state)

    clusters = KMeans(
        n_clusters=n_lab, n_init=3, random_state=int(rng.integers(2**31 - 1))
    ).fit_predict(x)
    sil = _silhouette_codes(x, lab, n_lab)
    dist, idx = _knn(x, max(n_neighbors, lisi_neighbors))
    k_lisi = min(lisi_neighbors, idx.shape[1])
    graph = _graph_from_knn(idx[:, : min(n_neighbors, idx.shape[1])])
    d_l, i_l = dist[:, :k_lisi], idx[:, :k_lisi]

    scores = {
        "NMI": normalized_mutual_info_score(lab, clusters, average_method="arithmetic"),
        "ARI": adjusted_rand_score(lab, clusters),
        "silhouette_label": (sil.mean() + 1.0) / 2.0,
        "cLISI": _scaled_clisi(_lisi_from_knn(d_l, i_l, lab, n_lab, None), n_lab, True),
        "isolated_label": _isolated_from_silhouette(sil, lab, bat, n_lab, None, True),
        "silhouette_batch": silhouette_batch(x, lab, bat),
        "iLISI": _scaled_ilisi(_lisi_from_knn(d_l, i_l, bat, n_bat, None), n_bat, True),
        "graph_connectivity": _graph_connectivity_codes(graph, lab, n_lab),
    }
    out = pd.Series(scores, dtype=np.float64)
    out["bio_conservation"] = out[list(BIO_METRICS)].mean()
    out["batch_correction"] = out[list(BATCH_METRICS)].mean()
    out["overall"] = 0.6 * out["bio_conservation"] + 0.4 * out["batch_correction"]
    return out
