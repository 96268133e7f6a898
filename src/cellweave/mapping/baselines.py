"""Baseline gene predictors for the leave-gene-out evaluation (:mod:`.evaluate`).

Each is a gene predictor ``predict(adata_sc, adata_sp, genes, *, random_state=0, **params)``
returning an ``(adata_sp.n_obs, len(genes))`` array of the held-out ``genes`` at every spot:

``depth``
    The spot's total over its (training) genes times the gene's share in the pooled scRNA-seq
    reference: what sequencing depth alone predicts. Count scale.
``knn``
    Average of the spot's ``n_neighbors`` nearest scRNA-seq cells in a shared normalised space
    (each profile divided by its total over the shared genes, ``log1p(1e4 x)``, genes
    standardised within each data set, cosine distance); the held-out genes are averaged as
    each cell's value divided by its total over the shared genes, the scale of the
    normalized scheme's truth.
``spage``
    SpaGE (Abdelaal et al. 2020, *NAR* 48, e107; github.com/tabdelaal/SpaGE): PRECISE domain
    adaptation (principal vectors between the two data sets' PCA subspaces, Mourragui et al.
    2019), then a distance-weighted kNN (k=50, cosine) in the aligned space; see :func:`spage`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.linalg
from anndata import AnnData
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.preprocessing import normalize

from .. import validate
from ..errors import InputError, MissingKeyError
from ..graph import nearest_neighbors
from .features import row_totals, to_dense

__all__ = ["BASELINES", "depth", "knn", "principal_vectors", "spage"]


# ----------------------------------------------------------------------------- helpers


def _training_genes(adata_sc: AnnData, adata_sp: AnnData) -> list[str]:
    """Spatial genes also in the reference (the genes a predictor may align on)."""
    shared = validate.shared_features(
        adata_sp, adata_sc, names=("spatial data", "scRNA-seq reference")
    )
    return list(shared)


def _columns(adata: AnnData, genes: Sequence[str], *, name: str) -> Any:
    """``adata.X`` restricted to ``genes`` (in that order), sparse kept sparse."""
    index = adata.var_names.get_indexer(list(genes))
    if (index < 0).any():
        missing = [g for g, i in zip(genes, index, strict=True) if i < 0]
        raise MissingKeyError(
            f"gene(s) {', '.join(missing[:5])} are not in {name}.var_names: predict only genes "
            f"that {name} measures"
        )
    X = adata.X[:, index]
    return (
        sparse.csr_matrix(X, dtype=np.float64)
        if sparse.issparse(X)
        else np.asarray(X, dtype=np.float64)
    )


def _divide_rows(X: Any, totals: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Dense ``scale * X / totals`` per row (rows with total 0 stay 0)."""
    factor = np.divide(scale, totals, out=np.zeros_like(totals), where=totals > 0)
    if sparse.issparse(X):
        return to_dense(sparse.diags(factor) @ X)
    return np.asarray(X, dtype=np.float64) * factor[:, None]


def _zscore(X: np.ndarray) -> np.ndarray:
    """Column z-scores (``ddof=0``, as ``scipy.stats.zscore``); constant columns become 0."""
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, np.inf)


def _neighbour_average(index: np.ndarray, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``sum_k weights[i, k] * values[index[i, k]]`` per row, as a sparse product."""
    n, k = index.shape
    W = sparse.csr_matrix(
        (weights.ravel(), index.ravel(), np.arange(0, n * k + 1, k)),
        shape=(n, values.shape[0]),
    )
    return np.asarray(W @ values)


def _check_neighbors(n_neighbors: int) -> int:
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int | np.integer):
        raise InputError(f"n_neighbors={n_neighbors!r} must be a positive integer, e.g. 15")
    if n_neighbors < 1:
        raise InputError(f"n_neighbors={n_neighbors} must be >= 1; pass e.g. 15")
    return int(n_neighbors)


# ----------------------------------------------------------------------------- depth


def depth(
    adata_sc: AnnData, adata_sp: AnnData, genes: Sequence[str], *, random_state: int = 0
) -> np.ndarray:
    """Depth only: ``T_i * m_g`` with ``T_i`` spot ``i``'s total over its genes and ``m_g``
    gene ``g``'s total in the reference divided by the reference's total over the spatial
    genes (the count expected from the spot's depth and the gene's average share).

    ``random_state`` is accepted for the predictor protocol and unused.
    """
    train = _training_genes(adata_sc, adata_sp)
    sc_train = float(_columns(adata_sc, train, name="adata_sc").sum())
    share = np.asarray(_columns(adata_sc, genes, name="adata_sc").sum(axis=0)).ravel()
    share = share / sc_train if sc_train > 0 else share
    totals = row_totals(adata_sp.X)
    return totals[:, None] * share[None, :]


# ----------------------------------------------------------------------------- knn


def _shared_space(X: Any) -> np.ndarray:
    """Row-normalised (to 1e4 over the given genes), log1p, gene-standardised profiles."""
    return _zscore(np.log1p(_divide_rows(X, row_totals(X), 1e4)))


def knn(
    adata_sc: AnnData,
    adata_sp: AnnData,
    genes: Sequence[str],
    *,
    n_neighbors: int = 15,
    random_state: int = 0,
) -> np.ndarray:
    """kNN average: each spot's ``n_neighbors`` nearest reference cells (cosine distance in
    the shared normalised space of the common genes) averaged over the held-out ``genes``,
    each cell's value divided by its total over the common genes.

    ``n_neighbors`` defaults to scanpy's ``pp.neighbors`` default (15). Returns relative
    expression (the normalized scheme's scale). ``random_state`` is unused (exact search).
    """
    k = min(_check_neighbors(n_neighbors), adata_sc.n_obs)
    train = _training_genes(adata_sc, adata_sp)
    sc_train = _columns(adata_sc, train, name="adata_sc")
    sp_train = _columns(adata_sp, train, name="adata_sp")
    space_sc, space_sp = _shared_space(sc_train), _shared_space(sp_train)
    index = nearest_neighbors(space_sc, k, query=space_sp, metric="cosine")[1]
    values = _divide_rows(_columns(adata_sc, genes, name="adata_sc"), row_totals(sc_train))
    return _neighbour_average(index, np.full(index.shape, 1.0 / k), values)


# ----------------------------------------------------------------------------- SpaGE


def principal_vectors(
    X_source: np.ndarray, X_target: np.ndarray, n_pv: int, *, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal vectors between two data sets' PCA subspaces (PRECISE, Mourragui et al. 2019).

    As SpaGE's ``PVComputation`` with ``dim_reduction="pca"``: ``n_pv`` principal components
    of each data set (same genes, same order) are orthonormalised (``scipy.linalg.orth``),
    ``Ps Pt^T = U S V^T`` is decomposed, and the principal vectors are ``U^T Ps`` (source) and
    ``V^T Pt`` (target), rows normalised to unit length.

    Returns
    -------
    ``(source_pv, target_pv, cosine)``: ``(n_pv, n_genes)`` orthonormal rows each, and the
    ``(n_pv, n_pv)`` matrix of their cosine similarities (diagonal = the singular values,
    decreasing).
    """
    n_pv = int(min(n_pv, X_source.shape[0], X_target.shape[0], X_source.shape[1]))
    if n_pv < 1:
        raise InputError("principal vectors need at least one cell, spot and shared gene")
    Ps = PCA(n_components=n_pv, random_state=random_state).fit(X_source).components_
    Pt = PCA(n_components=n_pv, random_state=random_state).fit(X_target).components_
    Ps = scipy.linalg.orth(Ps.T).T
    Pt = scipy.linalg.orth(Pt.T).T
    u, _, vt = np.linalg.svd(Ps @ Pt.T)
    source = normalize((u.T @ Ps)[:n_pv], axis=1)
    target = normalize((vt @ Pt)[:n_pv], axis=1)
    return source, target, source @ target.T


def _spage_weights(distances: np.ndarray) -> np.ndarray:
    """SpaGE's neighbour weights per row: over neighbours with cosine distance ``d < 1``,
    ``w = (1 - d / sum(d)) / (m - 1)`` (they sum to 1); others get 0.

    Deviations from the reference (which gives NaN, later set to 0): a single neighbour with
    ``d < 1`` gets weight 1, and neighbours all at distance 0 share the weight equally.
    """
    close = distances < 1
    d = np.where(close, distances, 0.0)
    m = close.sum(axis=1, keepdims=True).astype(np.float64)
    s = d.sum(axis=1, keepdims=True)
    w = np.where(close, 1.0 - np.divide(d, s, out=np.zeros_like(d), where=s > 0), 0.0)
    w = np.divide(w, m - 1, out=np.zeros_like(w), where=m > 1)
    single_or_tied = ((m == 1) | ((s == 0) & (m > 0))).ravel()
    w[single_or_tied] = close[single_or_tied] / m[single_or_tied]
    return w


def spage(
    adata_sc: AnnData,
    adata_sp: AnnData,
    genes: Sequence[str],
    *,
    n_pv: int | None = None,
    n_neighbors: int = 50,
    min_cosine: float = 0.3,
    normalize: bool = True,
    random_state: int = 0,
) -> np.ndarray:
    """SpaGE (Abdelaal et al. 2020), reimplemented from its published code.

    1. Normalise as the SpaGE benchmarks do: spatial ``log(x / total * median(total) + 1)``
       (totals over the spatial genes), reference ``log(x / total * 1e6 + 1)`` (totals over
       all reference genes); z-score every gene within each data set.
    2. Principal vectors (:func:`principal_vectors`) on the common genes, ``n_pv`` of them
       (default ``min(n_common // 2, 100)``, the SpatialBenchmarking setting); keep those
       whose source/target cosine similarity exceeds ``min_cosine`` (0.3; at least one).
    3. Project both data sets on the kept source principal vectors; find each spot's
       ``n_neighbors`` (50) nearest reference cells by cosine distance; predict the held-out
       genes as the weighted average (:func:`_spage_weights`) of the neighbours'
       log-normalised reference values (SpaGE's output scale).

    ``normalize=False`` skips step 1's log-normalisation (z-scores of the values as given,
    prediction in the reference's own values): SpaGE as SpatialBenchmarking calls it.
    """
    k = min(_check_neighbors(n_neighbors), adata_sc.n_obs)
    train = _training_genes(adata_sc, adata_sp)
    sp = _columns(adata_sp, train, name="adata_sp")
    sc_train = _columns(adata_sc, train, name="adata_sc")
    sc_test = _columns(adata_sc, genes, name="adata_sc")
    if normalize:
        sp_totals = row_totals(sp)
        sp_log = np.log1p(_divide_rows(sp, sp_totals, float(np.median(sp_totals))))
        sc_totals = row_totals(adata_sc.X)
        sc_train = np.log1p(_divide_rows(sc_train, sc_totals, 1e6))
        sc_test = np.log1p(_divide_rows(sc_test, sc_totals, 1e6))
    else:
        sp_log, sc_train, sc_test = to_dense(sp), to_dense(sc_train), to_dense(sc_test)
    if n_pv is None:
        n_pv = min(len(train) // 2, 100)
    n_pv = max(int(n_pv), 1)
    source_z, target_z = _zscore(sc_train), _zscore(sp_log)
    source, _, cosine = principal_vectors(source_z, target_z, n_pv, random_state=random_state)
    effective = max(int((np.diag(cosine) > min_cosine).sum()), 1)
    S = source[:effective].T
    distances, index = nearest_neighbors(source_z @ S, k, query=target_z @ S, metric="cosine")
    return _neighbour_average(index, _spage_weights(distances), sc_test)


#: Baseline name -> gene predictor, as :func:`.evaluate.evaluate` lists them.
BASELINES: dict[str, Callable[..., np.ndarray]] = {"depth": depth, "knn": knn, "spage": spage}
