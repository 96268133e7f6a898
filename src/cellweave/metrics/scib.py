"""Integration scores computed the way scib-metrics 0.5.10 computes them (numpy/scipy/igraph).

:func:`scib_scores` reproduces the per-metric values of ``scib_metrics`` (github.com/YosefLab/
scib-metrics, v0.5.10) and the aggregation of its ``Benchmarker.get_results`` run as the
mosaic peers were scored: Leiden NMI/ARI instead of k-means, BRAS off, classic silhouette
batch added, PCR comparison on against the unintegrated embedding
(``pre_integrated_embedding_obsm_key``), min-max scaling off: ``bio`` = mean of (isolated
labels, Leiden NMI, Leiden ARI, silhouette label, cLISI), ``batch`` = mean of (silhouette
batch, iLISI, kBET, graph connectivity, PCR comparison), ``total = 0.6 bio + 0.4 batch``
(NaN-aware means). Without the unintegrated embedding PCR comparison is left out and
``batch`` is the mean of the other four (a different scale). No JAX and no scib-metrics are
needed; ``tests/data/scib_benchmarker_golden.json`` holds Benchmarker's own values that
the tests compare with (to 3 decimals).

Like scib-metrics, every graph comes from one 90-nearest-neighbour search whose lists
**include the cell itself** (column 0), cut to 15 (Leiden, graph connectivity), 50 (kBET) and
90 (LISI) neighbours. scib-metrics finds them with pynndescent (approximate); here they are
exact (``sklearn``), the only intended difference. Per metric:

``nmi`` / ``ari``
    Leiden (igraph, modularity, seed 42) on the UMAP fuzzy connectivities of the 15-NN lists
    at resolutions 0.2, 0.4, ..., 2.0; the resolution with the best NMI gives both values.
``asw_label``, ``asw_batch``, ``isolated_labels``
    Euclidean silhouettes, as :mod:`cellweave.metrics.integration` (same definitions).
``clisi`` / ``ilisi``
    LISI over the 89 non-self neighbours with perplexity 30, median, scaled to [0, 1].
``kbet``
    scib-metrics ``kbet_per_label``: per label, the UMAP connectivities of the 50-NN lists
    restricted to the label are embedded by a diffusion map (100 components); each cell's
    ``k0 + 1`` nearest neighbours there (itself included, ``k0 = clip(mean batch size / 4,
    10, 70)``) are tested against the label's batch frequencies by a chi-square test; the
    acceptance rate (p >= 0.05) is averaged over labels. Labels with < 10 cells or one batch
    are skipped; a label split into small graph components scores 0.
``graph_connectivity``
    Directed 15-NN graph per label, largest strongly connected component / label size.
``pcr_comparison``
    :mod:`cellweave.metrics.pcr`: variance share explained by the batch over all principal
    components, before vs after integration, ``max(0, (pre - post) / pre)``.

Costs: the silhouettes are quadratic (~2 s for 10k cells); kBET solves one sparse
eigenproblem per label (~10 s for 10k cells).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from ..errors import InputError
from .distributions import as_label_array
from .inputs import label_codes, scored_inputs
from .kbet import kbet_from_graph
from .label_transfer import label_transfer_balanced_accuracy, labelled_split
from .lisi import lisi_from_knn, scaled_clisi, scaled_ilisi
from .neighbours import graph_connectivity_from_codes, scib_neighbors
from .pcr import pcr_comparison
from .silhouette import isolated_label_from_silhouette, silhouette_batch, silhouette_from_codes

__all__ = [
    "BATCH_KEYS",
    "BIO_KEYS",
    "PCR_BATCH_KEYS",
    "SCIB_KEYS",
    "SCIB_PCR_KEYS",
    "graph_connectivity_directed",
    "integration_report",
    "kbet",
    "label_transfer_balanced_accuracy",
    "labelled_split",
    "leiden_nmi_ari",
    "pcr_comparison",
    "scib_metrics_reference",
    "scib_neighbors",
    "scib_scores",
    "umap_connectivities",
]

BIO_KEYS = ("isolated_labels", "nmi", "ari", "asw_label", "clisi")
BATCH_KEYS = ("asw_batch", "ilisi", "kbet", "graph_connectivity")
#: Keys of :func:`scib_scores`, in the order of the ``--metrics-json`` schema.
SCIB_KEYS = (
    "nmi",
    "ari",
    "asw_label",
    "clisi",
    "isolated_labels",
    "asw_batch",
    "ilisi",
    "kbet",
    "graph_connectivity",
    "bio",
    "batch",
    "total",
)
#: Batch metrics of scib-metrics' Benchmarker (BRAS off, silhouette batch added): with the
#: unintegrated embedding given, ``batch`` is their mean.
PCR_BATCH_KEYS = (*BATCH_KEYS, "pcr_comparison")
#: Keys of :func:`scib_scores` when it is given the unintegrated embedding.
SCIB_PCR_KEYS = (*SCIB_KEYS[:9], "pcr_comparison", *SCIB_KEYS[9:])
#: Leiden resolutions scanned by scib-metrics (``2 * i / 10`` for ``i = 1..10``).
LEIDEN_RESOLUTIONS = tuple(2 * i / 10 for i in range(1, 11))

_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3


# --------------------------------------------------------------------------------------
# Neighbours and graphs
# --------------------------------------------------------------------------------------


def _smooth_knn_dist(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``sigma`` and ``rho`` of UMAP's ``smooth_knn_dist`` (local connectivity 1).

    ``rho`` is the distance to the nearest neighbour at nonzero distance; ``sigma`` is found by
    bisection so that ``sum_j>=1 exp(-max(d_j - rho, 0) / sigma) = log2(k)``, all rows at once.
    """
    n, k = dist.shape
    target = np.log2(k)
    nonzero = dist > 0
    has = nonzero.any(axis=1)
    first = np.argmax(nonzero, axis=1)
    rho = np.where(has, dist[np.arange(n), first], 0.0).astype(np.float32)
    d = (dist[:, 1:] - rho[:, None]).astype(np.float64)
    lo = np.zeros(n)
    hi = np.full(n, np.inf)
    mid = np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(64):
        psum = np.where(d > 0, np.exp(-d / mid[:, None]), 1.0).sum(axis=1)
        active &= np.abs(psum - target) >= _SMOOTH_K_TOLERANCE
        if not active.any():
            break
        up = active & (psum > target)
        down = active & ~(psum > target)
        hi[up] = mid[up]
        mid[up] = (lo[up] + hi[up]) / 2.0
        lo[down] = mid[down]
        mid[down] = np.where(np.isinf(hi[down]), mid[down] * 2.0, (lo[down] + hi[down]) / 2.0)
    floor = _MIN_K_DIST_SCALE * np.where(rho > 0, dist.mean(axis=1), dist.mean())
    sigma = np.maximum(mid, floor).astype(np.float32)
    return sigma, rho


def umap_connectivities(distances: np.ndarray, indices: np.ndarray) -> sparse.csr_matrix:
    """UMAP fuzzy-union connectivities (scanpy's / scib-metrics' ``connectivities``).

    Parameters
    ----------
    distances, indices
        ``(n_cells, k)`` kNN lists that include each cell itself (as :func:`scib_neighbors`).

    Returns
    -------
    Symmetric ``(n_cells, n_cells)`` CSR matrix (float32, sorted indices) with
    ``w_ij = exp(-(d_ij - rho_i) / sigma_i)`` combined as ``W + W.T - W * W.T``.
    """
    dist = np.asarray(distances, dtype=np.float32)
    idx = np.asarray(indices, dtype=np.int64)
    n, k = idx.shape
    sigma, rho = _smooth_knn_dist(dist)
    gap = dist - rho[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # float32 quotient, exp in float64 rounded once: the correctly rounded float32 exp
        # of umap's numba code, so that the graphs (and Leiden's clusters) are identical
        w = np.exp(-(gap / sigma[:, None]).astype(np.float64)).astype(np.float32)
    w[(gap <= 0) | (sigma[:, None] == 0)] = 1.0
    w[idx == np.arange(n)[:, None]] = 0.0
    g = sparse.csr_matrix((w.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    g.eliminate_zeros()
    gt = g.T.tocsr()
    out = (g + gt - g.multiply(gt)).tocsr()
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _connectivities(
    embedding_or_graph: Any, n_neighbors: int, method: str = "exact"
) -> sparse.csr_matrix:
    """A precomputed sparse graph as CSR, or the UMAP connectivities of an embedding's
    ``n_neighbors`` lists (self included)."""
    if sparse.issparse(embedding_or_graph):
        return sparse.csr_matrix(embedding_or_graph)
    lists = scib_neighbors(embedding_or_graph, n_neighbors=n_neighbors, method=method)
    return umap_connectivities(*lists)


def _directed_knn_graph(indices: np.ndarray) -> sparse.csr_matrix:
    n, k = indices.shape
    rows = np.repeat(np.arange(n), k)
    return sparse.csr_matrix((np.ones(n * k), (rows, indices.ravel())), shape=(n, n))


def graph_connectivity_directed(indices: np.ndarray, labels: Any) -> float:
    """scib-metrics graph connectivity on a directed kNN graph given by its neighbour lists.

    For each label, the fraction of its cells in the largest **strongly** connected component
    of the kNN graph restricted to the label (an edge from each cell to each neighbour in
    ``indices``); the mean over labels, in (0, 1].
    """
    idx = np.asarray(indices)
    lab, n_lab = label_codes(labels, "labels", idx.shape[0])
    return graph_connectivity_from_codes(_directed_knn_graph(idx), lab, n_lab)


# --------------------------------------------------------------------------------------
# Leiden NMI / ARI
# --------------------------------------------------------------------------------------


def _leiden(graph: sparse.csr_matrix, resolution: float, seed: int) -> np.ndarray:
    """igraph Leiden (modularity) as scib-metrics: both edge directions kept, seeded RNG."""
    try:
        import igraph
    except ImportError as err:  # a core dependency; only a broken install lacks it
        raise ImportError("Leiden NMI/ARI need python-igraph: pip install igraph") from err

    coo = graph.tocoo()
    g = igraph.Graph(
        n=graph.shape[0],
        edges=np.column_stack([coo.row, coo.col]).tolist(),
        directed=True,
        edge_attrs={"weight": coo.data.tolist()},
    )
    g.to_undirected(mode="each")
    igraph.set_random_number_generator(random.Random(seed))
    try:
        part = g.community_leiden(
            objective_function="modularity", weights="weight", resolution=resolution
        )
    finally:
        igraph.set_random_number_generator(random)
    return np.asarray(part.membership)


def leiden_nmi_ari(
    embedding_or_graph: Any,
    labels: Any,
    *,
    n_neighbors: int = 15,
    resolutions: tuple[float, ...] = LEIDEN_RESOLUTIONS,
    seed: int = 42,
) -> dict[str, float]:
    """NMI and ARI between labels and Leiden clusters at the resolution with the best NMI.

    Parameters
    ----------
    embedding_or_graph
        ``(n_cells, n_dims)`` embedding (its UMAP connectivities over ``n_neighbors`` neighbours,
        self included, are clustered) or a precomputed sparse ``(n_cells, n_cells)`` graph.
    labels
        Cell-type label per cell.
    resolutions
        Leiden resolutions to scan (scib-metrics: 0.2, 0.4, ..., 2.0).
    seed
        Seed of igraph's random number generator for each clustering (scib-metrics: 42).

    Returns
    -------
    ``{"nmi": ..., "ari": ..., "resolution": ...}``.
    """
    graph = _connectivities(embedding_or_graph, n_neighbors)
    lab = as_label_array(labels, "labels", graph.shape[0]).astype(str)
    best = {"nmi": -np.inf, "ari": np.nan, "resolution": np.nan}
    for r in resolutions:
        pred = _leiden(graph, r, seed)
        score = normalized_mutual_info_score(lab, pred, average_method="arithmetic")
        if score > best["nmi"]:
            best = {
                "nmi": float(score),
                "ari": float(adjusted_rand_score(lab, pred)),
                "resolution": r,
            }
    return best


# --------------------------------------------------------------------------------------
# kBET
# --------------------------------------------------------------------------------------


def kbet(
    embedding_or_graph: Any,
    batches: Any,
    labels: Any,
    *,
    n_neighbors: int = 50,
    alpha: float = 0.05,
    diffusion_n_comps: int = 100,
    per_label: bool = False,
    neighbors: str = "exact",
) -> float | pd.Series:
    """kBET acceptance rate per cell-type label, averaged (scib-metrics ``kbet_per_label``).

    Parameters
    ----------
    embedding_or_graph
        ``(n_cells, n_dims)`` embedding (UMAP connectivities over ``n_neighbors`` neighbours,
        self included, are built) or a precomputed symmetric sparse connectivity graph.
    batches, labels
        Batch and cell-type label per cell.
    alpha
        Significance level of the chi-square test; a cell is accepted when ``p >= alpha``.
    diffusion_n_comps
        Diffusion-map components used to compare cells within a label.
    per_label
        Return the score of each label (NaN where skipped) instead of their mean.
    neighbors
        Neighbour search, for the graph and in each label's diffusion map:
        ``"pynndescent"`` (scib-metrics') or ``"exact"``.

    Returns
    -------
    Mean acceptance rate over labels in [0, 1]; 1 = every neighbourhood has the label's batch
    composition.
    """
    conn = _connectivities(embedding_or_graph, n_neighbors, neighbors)
    return kbet_from_graph(
        conn,
        batches,
        labels,
        alpha=alpha,
        diffusion_n_comps=diffusion_n_comps,
        per_label=per_label,
        neighbors=neighbors,
    )


# --------------------------------------------------------------------------------------
# All scores
# --------------------------------------------------------------------------------------


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def scib_scores(
    embedding: Any,
    labels: Any,
    batches: Any,
    *,
    pre_embedding: Any = None,
    n_neighbors: int = 90,
    leiden_seed: int = 42,
    neighbors: str = "auto",
) -> dict[str, float]:
    """scib-metrics 0.5.10 scores of an integrated embedding, with their aggregates.

    With ``pre_embedding`` (the unintegrated embedding) the scores are those of scib-metrics'
    ``Benchmarker`` run with ``pre_integrated_embedding_obsm_key`` = that embedding, Leiden
    NMI/ARI, BRAS off, PCR comparison on, classic silhouette batch added and min-max scaling
    off (``get_results(min_max_scale=False)``): ``batch`` is the mean of five metrics
    (:data:`PCR_BATCH_KEYS`). Without it, PCR comparison cannot be computed and ``batch`` is
    the mean of the other four (:data:`BATCH_KEYS`): a different scale, higher whenever PCR
    comparison is low; compare only numbers computed the same way.

    Parameters
    ----------
    embedding
        ``(n_cells, n_dims)`` integrated embedding (e.g. ``mdata.obsm["X_cellweave"]``).
    labels
        Cell-type label per cell (no missing values).
    batches
        Batch per cell; at least 2 distinct values.
    pre_embedding
        ``(n_cells, n_dims_pre)`` unintegrated embedding of the same cells (e.g. PCA of the
        log-normalised RNA and LSI of ATAC), for PCR comparison.
    n_neighbors
        Size of the neighbour lists (self included) used for LISI; Leiden and graph
        connectivity use their first 15 columns, kBET the first 50 (scib-metrics: 90).
    leiden_seed
        igraph seed of each Leiden clustering (scib-metrics: 42).
    neighbors
        ``"pynndescent"``: Benchmarker's approximate neighbour search (same parameters and
        seed, so the same lists); ``"exact"``: sklearn's; ``"auto"``: pynndescent with
        ``pre_embedding`` (the Benchmarker scores), exact without it (the four-metric batch
        scores as before). The graph scores, kBET above all, follow the lists (kBET moved by
        0.03 between the two on the golden test data).

    Returns
    -------
    dict with exactly :data:`SCIB_KEYS` (:data:`SCIB_PCR_KEYS` with ``pre_embedding``): the
    bio metrics ``nmi``, ``ari``, ``asw_label``, ``clisi``, ``isolated_labels``; the batch
    metrics ``asw_batch``, ``ilisi``, ``kbet``, ``graph_connectivity`` (and
    ``pcr_comparison``); ``bio`` and ``batch`` (NaN-aware means) and
    ``total = 0.6 * bio + 0.4 * batch``. All in [0, 1], higher is better.
    """
    x, lab, n_lab, bat, n_bat = scored_inputs(embedding, labels, batches, "scib_scores")
    if n_neighbors < 50:
        raise InputError(
            f"n_neighbors={n_neighbors} is too small: scib scores use lists of 15 and 50 "
            "neighbours cut from it; pass n_neighbors >= 50 (scib-metrics uses 90)"
        )
    if neighbors == "auto":
        neighbors = "exact" if pre_embedding is None else "pynndescent"
    dist, idx = scib_neighbors(x, n_neighbors=n_neighbors, method=neighbors)
    k15, k50 = min(15, idx.shape[1]), min(50, idx.shape[1])
    conn15 = umap_connectivities(dist[:, :k15], idx[:, :k15])
    conn50 = umap_connectivities(dist[:, :k50], idx[:, :k50])
    perplexity = float(idx.shape[1] // 3)
    sil = silhouette_from_codes(x, lab, n_lab)
    leiden = leiden_nmi_ari(conn15, lab, seed=leiden_seed)
    out = {
        "nmi": leiden["nmi"],
        "ari": leiden["ari"],
        "asw_label": float((sil.mean() + 1.0) / 2.0),
        "clisi": scaled_clisi(
            lisi_from_knn(dist[:, 1:], idx[:, 1:], lab, n_lab, perplexity), n_lab, True
        ),
        "isolated_labels": isolated_label_from_silhouette(sil, lab, bat, n_lab, None, True),
        "asw_batch": silhouette_batch(x, lab, bat),
        "ilisi": scaled_ilisi(
            lisi_from_knn(dist[:, 1:], idx[:, 1:], bat, n_bat, perplexity), n_bat, True
        ),
        "kbet": kbet(conn50, bat, lab, neighbors=neighbors),
        "graph_connectivity": graph_connectivity_directed(idx[:, :k15], lab),
    }
    if pre_embedding is not None:
        out["pcr_comparison"] = pcr_comparison(pre_embedding, x, bat)
    return _with_aggregates(out)


def _with_aggregates(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics as floats plus ``bio``, ``batch`` and ``total``, keyed as
    :data:`SCIB_KEYS` (:data:`SCIB_PCR_KEYS` when ``pcr_comparison`` is among them)."""
    pcr = "pcr_comparison" in metrics
    out = {k: float(v) for k, v in metrics.items()}
    out["bio"] = _nanmean([out[k] for k in BIO_KEYS])
    out["batch"] = _nanmean([out[k] for k in (PCR_BATCH_KEYS if pcr else BATCH_KEYS)])
    out["total"] = 0.6 * out["bio"] + 0.4 * out["batch"]
    return {k: out[k] for k in (SCIB_PCR_KEYS if pcr else SCIB_KEYS)}


def scib_metrics_reference(
    embedding: Any,
    labels: Any,
    batches: Any,
    *,
    pre_embedding: Any = None,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
    with_kbet: bool = True,
) -> dict[str, float]:
    """The same scores computed by the scib-metrics package itself (an optional dependency:
    ``pip install 'cellweave[bench]'``), to check :func:`scib_scores` against it.

    Parameters
    ----------
    embedding, labels, batches, pre_embedding
        As :func:`scib_scores` (with ``pre_embedding``: scib-metrics' ``pcr_comparison``).
    neighbors
        ``(distances, indices)`` lists with the cell itself first (e.g. from
        :func:`scib_neighbors`); default: scib-metrics' pynndescent, 90 neighbours.
    with_kbet
        Compute ``kbet_per_label`` (it runs pynndescent per label: minutes); ``False``
        leaves ``kbet`` NaN, out of the ``batch`` mean.
    """
    try:
        import scib_metrics as sm
        from scib_metrics.nearest_neighbors import NeighborsResults, pynndescent
    except ImportError as err:
        raise ImportError(
            "scib_metrics_reference needs scib-metrics: pip install 'cellweave[bench]'"
        ) from err

    x = np.asarray(embedding, dtype=np.float32)
    labels, batches = np.asarray(labels).astype(str), np.asarray(batches).astype(str)
    if neighbors is None:
        nn = pynndescent(x, n_neighbors=90, random_state=0, n_jobs=1)
    else:
        nn = NeighborsResults(distances=neighbors[0], indices=neighbors[1])
    nn15 = nn.subset_neighbors(15)
    leiden = sm.nmi_ari_cluster_labels_leiden(nn15, labels, seed=42)
    kbet_value = (
        sm.kbet_per_label(nn.subset_neighbors(50), batches, labels) if with_kbet else np.nan
    )
    metrics = {
        "nmi": leiden["nmi"],
        "ari": leiden["ari"],
        "asw_label": sm.silhouette_label(x, labels),
        "clisi": sm.clisi_knn(nn, labels),
        "isolated_labels": sm.isolated_labels(x, labels, batches),
        "asw_batch": sm.silhouette_batch(x, labels, batches),
        "ilisi": sm.ilisi_knn(nn, batches),
        "kbet": kbet_value,
        "graph_connectivity": sm.graph_connectivity(nn15, labels),
    }
    if pre_embedding is not None:
        pre = np.asarray(pre_embedding, dtype=np.float32)
        metrics["pcr_comparison"] = sm.pcr_comparison(pre, x, batches, categorical=True)
    return _with_aggregates(metrics)


def integration_report(
    embedding: Any,
    labels: Any,
    batches: Any,
    *,
    seconds: float | None = None,
    predictions: Any = None,
    describe: bool = False,
    pre_embedding: Any = None,
) -> dict[str, Any]:
    """The ``--metrics-json`` document of ``cellweave integrate``.

    Returns ``{"metrics": scib_scores(...), "label_transfer": {"balanced_accuracy": kNN on
    1%}, "seconds": seconds}``; with ``predictions`` (the model's own labels) the
    ``label_transfer`` entry also holds ``model_balanced_accuracy`` on the same held-out cells.
    With ``describe=True`` (the CLI's file), ``label_transfer["model_score"]`` also names the
    score to read as the model's (its own labels when given, else the kNN transfer),
    With ``pre_embedding`` (the unintegrated embedding) the metrics include PCR comparison
    (:func:`scib_scores`).
    ``chance`` is a random guess's balanced accuracy and ``about`` says what each entry is.
    """
    transfer: dict[str, Any] = {
        "balanced_accuracy": label_transfer_balanced_accuracy(embedding, labels)
    }
    if predictions is not None:
        transfer["model_balanced_accuracy"] = label_transfer_balanced_accuracy(
            None, labels, predictions=predictions
        )
    if describe:
        transfer.update(_describe_transfer(labels, model=predictions is not None))
    return {
        "metrics": scib_scores(embedding, labels, batches, pre_embedding=pre_embedding),
        "label_transfer": transfer,
        "seconds": None if seconds is None else float(seconds),
    }


def _describe_transfer(labels: Any, *, model: bool) -> dict[str, Any]:
    """Which label-transfer score is the model's, the chance level, and what each entry is."""
    about = {
        "balanced_accuracy": "baseline: a kNN classifier on the embedding, fitted on 1% of "
        "the cells (stratified), scored on the others; not the model's prediction",
        "chance": "balanced accuracy of a random guess (1 / number of classes)",
        "model_score": "the key of the score to read as the model's label transfer",
    }
    if model:
        about["model_balanced_accuracy"] = (
            "the model's own predicted labels, scored on the same held-out cells"
        )
    n_classes = len(set(as_label_array(labels, "labels").astype(str)))
    return {
        "model_score": "model_balanced_accuracy" if model else "balanced_accuracy",
        "chance": 1.0 / max(n_classes, 1),
        "about": about,
    }
