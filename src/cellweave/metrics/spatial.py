"""Gene-level scores for spatial imputation / prediction, after SpatialBenchmarking.

The four per-gene scores and the accuracy score (AS) follow Li et al. 2022, *Benchmarking
spatial and single-cell transcriptomics integration methods for transcript distribution
prediction and cell type deconvolution*, Nature Methods 19, 662-670, and their code
(github.com/QuKunLab/SpatialBenchmarking, ``Benchmarking/GenesMetrics.py`` and
``AccuracyMetrics.ipynb``). For every gene ``g`` (a column of the ``(n_spots, n_genes)``
matrices ``true`` and ``pred``):

``PCC``
    Pearson correlation of the raw values across spots (``scipy.stats.pearsonr``).
``SSIM``
    Structural similarity of the gene's values after ``scale_max`` (each vector divided by
    its own maximum, so both lie in [0, 1]), computed globally over the spot vector with
    ``k1 = 0.01``, ``k2 = 0.03``, ``L = 1``, ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``,
    ``C3 = C2 / 2`` and population (``ddof=0``) moments::

        SSIM = (2 mu_t mu_p + C1) / (mu_t^2 + mu_p^2 + C1)
             * (2 s_t s_p + C2) / (s_t^2 + s_p^2 + C2)
             * (s_tp + C3) / (s_t s_p + C3)
``RMSE``
    Root mean squared error between the z-scored vectors (``scipy.stats.zscore``, ``ddof=0``);
    it equals ``sqrt(2 - 2 PCC)`` for non-constant genes.
``JS``
    Jensen-Shannon divergence (natural log, in [0, ln 2]) between the two vectors scaled to
    sum 1 (``scale_plus``), i.e. the gene's spatial distributions.

Higher is better for PCC and SSIM, lower for RMSE and JS.

Constant genes and other deviations from the reference code (which would produce NaN and
RuntimeWarnings in these cases) are defined here without warnings:

* ``PCC`` is **NaN** when the true vector is constant (no spatial pattern to recover: the
  gene is skipped by the NaN-aware summaries, including :func:`accuracy_score`) and **0**
  when only the prediction is constant (a flat prediction recovers no pattern).
* ``scale_max`` leaves a vector whose maximum is <= 0 unscaled (the reference divides by it,
  giving NaN for an all-zero vector). SSIM always uses ``L = 1`` (the reference uses the
  smaller of the two scaled maxima, which is 1 unless a vector is all zero).
* ``zscore`` of a constant vector is taken as all zeros (the reference gives NaN), so the
  RMSE of a constant prediction against a varying truth is 1.
* For JS, negative predictions are clipped to 0 before ``scale_plus`` and a vector summing
  to 0 becomes the uniform distribution (the reference gives NaN).
* NaN or infinite inputs raise :class:`~cellweave.errors.NonFiniteError` (the reference
  silently filled NaN predictions with ``1e-20``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import rankdata

from ..errors import EmptyDataError, InputError, MissingKeyError
from .distributions import (
    BLOCK_SIZE,
    _js_probabilities,
    column_blocks,
    paired_matrices,
    select_columns,
    to_probabilities,
)

__all__ = [
    "METRICS",
    "accuracy_score",
    "fraction_scores",
    "gene_scores",
    "js",
    "masked_entry_scores",
    "pcc",
    "rmse",
    "ssim",
]

#: The per-gene scores of :func:`gene_scores`, in column order.
METRICS = ("PCC", "SSIM", "RMSE", "JS")
#: Whether a higher value is better, per metric (used for ranking in :func:`accuracy_score`).
HIGHER_IS_BETTER = {"PCC": True, "SSIM": True, "RMSE": False, "JS": False}

_SSIM_K1, _SSIM_K2, _SSIM_L = 0.01, 0.03, 1.0


# --------------------------------------------------------------------------------------
# Column-wise kernels on dense (n_spots, n_block) arrays
# --------------------------------------------------------------------------------------


def _constant_columns(x: np.ndarray) -> np.ndarray:
    return x.max(axis=0) == x.min(axis=0)


def _pcc_block(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pearson r per column: NaN for constant truth, 0 for a constant prediction only."""
    const_t, const_p = _constant_columns(t), _constant_columns(p)
    tc = t - t.mean(axis=0)
    pc = p - p.mean(axis=0)
    num = (tc * pc).sum(axis=0)
    den = np.sqrt((tc * tc).sum(axis=0) * (pc * pc).sum(axis=0))
    ok = ~(const_t | const_p) & (den > 0)
    r = np.zeros(t.shape[1])
    r[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
    r[const_t] = np.nan
    return r


def _scale_max(x: np.ndarray) -> np.ndarray:
    """SpatialBenchmarking ``scale_max``: divide each column by its maximum (if positive)."""
    m = x.max(axis=0)
    return x / np.where(m > 0, m, 1.0)


def _ssim_block(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """SpatialBenchmarking ``cal_ssim`` per column, on ``scale_max``-ed values."""
    t, p = _scale_max(t), _scale_max(p)
    mu_t, mu_p = t.mean(axis=0), p.mean(axis=0)
    s_t, s_p = t.std(axis=0), p.std(axis=0)
    s_tp = ((t - mu_t) * (p - mu_p)).mean(axis=0)
    c1 = (_SSIM_K1 * _SSIM_L) ** 2
    c2 = (_SSIM_K2 * _SSIM_L) ** 2
    c3 = c2 / 2
    luminance = (2 * mu_t * mu_p + c1) / (mu_t**2 + mu_p**2 + c1)
    contrast = (2 * s_t * s_p + c2) / (s_t**2 + s_p**2 + c2)
    structure = (s_tp + c3) / (s_t * s_p + c3)
    return luminance * contrast * structure


def _zscore(x: np.ndarray) -> np.ndarray:
    """Column z-scores (``ddof=0``); constant columns become zeros."""
    sd = x.std(axis=0)
    sd = np.where(_constant_columns(x) | (sd == 0), np.inf, sd)
    return (x - x.mean(axis=0)) / sd


def _rmse_block(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    d = _zscore(t) - _zscore(p)
    return np.sqrt((d * d).mean(axis=0))


def _js_block(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    t = to_probabilities(np.clip(t, 0.0, None), axis=0)
    p = to_probabilities(np.clip(p, 0.0, None), axis=0)
    return _js_probabilities(t, p, axis=0)


_KERNELS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "PCC": _pcc_block,
    "SSIM": _ssim_block,
    "RMSE": _rmse_block,
    "JS": _js_block,
}


def _per_gene(metric: str, true: Any, pred: Any, block_size: int) -> np.ndarray:
    t, p, _, _ = paired_matrices(true, pred, feature="gene")
    return _score_blocks((metric,), t, p, block_size)[metric]


def _score_blocks(metrics: Sequence[str], t: Any, p: Any, block_size: int) -> dict[str, np.ndarray]:
    out = {m: np.empty(t.shape[1]) for m in metrics}
    for cols, tb, pb in column_blocks(t, p, block_size):
        for m in metrics:
            out[m][cols] = _KERNELS[m](tb, pb)
    return out


def pcc(true: Any, pred: Any, *, block_size: int = BLOCK_SIZE) -> np.ndarray:
    """Pearson correlation per gene between true and predicted values across spots.

    Parameters
    ----------
    true, pred
        ``(n_spots, n_genes)`` arrays, sparse matrices, DataFrames or AnnData (aligned by
        spot and gene names when both carry names).
    block_size
        Genes densified at a time for sparse input.

    Returns
    -------
    ``(n_genes,)`` array in [-1, 1]; NaN where the truth is constant, 0 where only the
    prediction is.
    """
    return _per_gene("PCC", true, pred, block_size)


def ssim(true: Any, pred: Any, *, block_size: int = BLOCK_SIZE) -> np.ndarray:
    """Structural similarity per gene, on values scaled to maximum 1 (SpatialBenchmarking).

    See the module docstring for the formula and constants. Returns ``(n_genes,)`` values
    (1 for identical vectors; higher is better).
    """
    return _per_gene("SSIM", true, pred, block_size)


def rmse(true: Any, pred: Any, *, block_size: int = BLOCK_SIZE) -> np.ndarray:
    """Root mean squared error per gene between z-scored true and predicted values.

    Returns ``(n_genes,)`` values in [0, 2] (0 for identical or affinely related vectors;
    lower is better). Constant vectors z-score to zeros.
    """
    return _per_gene("RMSE", true, pred, block_size)


def js(true: Any, pred: Any, *, block_size: int = BLOCK_SIZE) -> np.ndarray:
    """Jensen-Shannon divergence (nats) per gene between the spot distributions.

    Each gene's true and predicted vectors are scaled to sum 1 over spots. Returns
    ``(n_genes,)`` values in [0, ln 2] (lower is better).
    """
    return _per_gene("JS", true, pred, block_size)


def gene_scores(
    true: Any,
    pred: Any,
    *,
    genes: Sequence[str] | None = None,
    block_size: int = BLOCK_SIZE,
) -> pd.DataFrame:
    """PCC, SSIM, RMSE and JS per gene, as in the SpatialBenchmarking protocol.

    Parameters
    ----------
    true
        Measured ``(n_spots, n_genes)`` expression (array, sparse, DataFrame or AnnData).
    pred
        Predicted expression of the same spots and genes. When both inputs carry names
        (DataFrame columns/index, AnnData ``var_names``/``obs_names``), ``pred`` is reordered
        to ``true``; differing name sets raise :class:`~cellweave.errors.InputError`.
    genes
        With named inputs: the subset of genes to score. With plain arrays: one label per
        column for the result's index (default ``0..n_genes-1``).
    block_size
        Genes densified at a time for sparse input.

    Returns
    -------
    DataFrame indexed by gene with float columns ``PCC``, ``SSIM``, ``RMSE``, ``JS``.

    Examples
    --------
    >>> scores = gene_scores(adata_sp[:, test_genes], predicted)  # doctest: +SKIP
    >>> scores.median()  # doctest: +SKIP
    """
    t, p, _, cols = paired_matrices(true, pred, feature="gene")
    t, p, index = select_columns(t, p, cols, genes)
    scores = _score_blocks(METRICS, t, p, block_size)
    frame = pd.DataFrame(scores, index=index, columns=list(METRICS))
    frame.index.name = "gene"
    return frame


def accuracy_score(
    results: Mapping[str, pd.DataFrame],
    *,
    aggregate: Literal["mean", "median"] = "mean",
) -> pd.Series:
    """Accuracy score (AS) that ranks methods by their gene scores (Li et al. 2022).

    For each method the per-gene ``PCC``, ``SSIM``, ``RMSE`` and ``JS`` are summarised over
    genes (NaN-aware), the methods are ranked on each metric so that the best of ``n``
    methods gets rank ``n`` and the worst rank 1 (PCC and SSIM ascending, RMSE and JS
    descending), each rank is divided by ``n``, and AS is the mean of the four normalised
    ranks. The best possible AS is 1, the worst ``1/n``.

    Parameters
    ----------
    results
        Method name -> :func:`gene_scores` table. Score every method on the same genes so
        that the summaries are comparable.
    aggregate
        Summary over genes. ``"mean"`` (default) is what the reference code does
        (``AccuracyMetrics.ipynb`` takes ``metrics.mean()``); ``"median"`` is more robust to
        a few failed genes.

    Returns
    -------
    Series named ``"AS"`` indexed by method, sorted from best to worst.

    Notes
    -----
    Deviations from the reference: tied summaries share their average rank (the reference
    breaks ties by sort order), and a method whose summary is NaN (every gene NaN) ranks
    last on that metric (the reference filled NaN with 0, which made it best on RMSE/JS).
    """
    if aggregate not in ("mean", "median"):
        raise InputError(f"aggregate must be 'mean' or 'median', got {aggregate!r}")
    if not results:
        raise EmptyDataError("results is empty: pass {method name: gene_scores table}")
    summary = {}
    for method, table in results.items():
        missing = [m for m in METRICS if m not in getattr(table, "columns", ())]
        if missing:
            raise MissingKeyError(
                f"results[{method!r}] lacks column(s) {missing}: pass the DataFrame returned "
                "by gene_scores (columns PCC, SSIM, RMSE, JS)"
            )
        values = table[list(METRICS)].to_numpy(dtype=np.float64)
        summary[method] = _nan_aggregate(values, aggregate)
    table = pd.DataFrame.from_dict(summary, orient="index", columns=list(METRICS))
    n = len(table)
    ranks = {}
    for metric in METRICS:
        v = table[metric].to_numpy()
        v = v if HIGHER_IS_BETTER[metric] else -v
        ranks[metric] = rankdata(np.where(np.isnan(v), -np.inf, v), method="average") / n
    score = pd.DataFrame(ranks, index=table.index).mean(axis=1)
    score.name = "AS"
    return score.sort_values(ascending=False, kind="stable")


def _nan_aggregate(values: np.ndarray, how: str) -> np.ndarray:
    """Column mean/median ignoring NaN; all-NaN columns give NaN without a warning."""
    out = np.full(values.shape[1], np.nan)
    for j in range(values.shape[1]):
        col = values[:, j]
        col = col[~np.isnan(col)]
        if col.size:
            out[j] = col.mean() if how == "mean" else np.median(col)
    return out


# --------------------------------------------------------------------------------------
# Scores on held-out entries (masked imputation)
# --------------------------------------------------------------------------------------


def _pearson_1d(a: np.ndarray, b: np.ndarray) -> float:
    return float(_pcc_block(a[:, None], b[:, None])[0])


def _take(x: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if sparse.issparse(x):
        return np.asarray(x[rows, cols], dtype=np.float64).ravel()
    return np.asarray(x[rows, cols], dtype=np.float64)


def _grouped_pearson(t: np.ndarray, p: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Pearson r of ``t`` vs ``p`` within each group (gene) ``0..n-1``.

    NaN for groups with fewer than 2 entries or constant truth, 0 for constant prediction.
    """
    count = np.bincount(groups, minlength=n).astype(np.float64)
    safe = np.maximum(count, 1.0)
    dt = t - (np.bincount(groups, t, minlength=n) / safe)[groups]
    dp = p - (np.bincount(groups, p, minlength=n) / safe)[groups]
    stt = np.bincount(groups, dt * dt, minlength=n)
    spp = np.bincount(groups, dp * dp, minlength=n)
    stp = np.bincount(groups, dt * dp, minlength=n)
    const_t = _grouped_constant(t, groups, n)
    const_p = _grouped_constant(p, groups, n)
    den = np.sqrt(stt * spp)
    ok = ~const_t & ~const_p & (den > 0)
    r = np.zeros(n)
    r[ok] = np.clip(stp[ok] / den[ok], -1.0, 1.0)
    r[const_t | (count < 2)] = np.nan
    return r


def _grouped_constant(x: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    np.minimum.at(lo, groups, x)
    np.maximum.at(hi, groups, x)
    return lo >= hi


def masked_entry_scores(true: Any, pred: Any, mask: Any) -> dict[str, Any]:
    """Score a prediction on held-out matrix entries (fit on masked data, score the mask).

    Parameters
    ----------
    true
        Full ``(n_obs, n_genes)`` matrix before masking (array, sparse, DataFrame, AnnData).
    pred
        Imputed matrix of the same shape (only the masked entries are read).
    mask
        Boolean ``(n_obs, n_genes)`` array or sparse matrix, ``True`` on the held-out entries.

    Returns
    -------
    dict with

    ``rmse``, ``mae``
        Over all held-out entries (raw values, no scaling).
    ``pearson``, ``spearman``
        Correlation of true vs predicted held-out values (NaN if the true values are constant,
        0 if only the predictions are).
    ``pcc_per_gene``
        Series (index: gene names or positions) of the Pearson r over each gene's held-out
        entries; NaN for genes with fewer than 2 held-out entries or constant truth there.
    ``pcc_gene_median``
        NaN-aware median of ``pcc_per_gene`` (NaN if no gene is scorable).
    ``n_entries``
        Number of held-out entries.
    """
    t, p, _, cols = paired_matrices(true, pred, feature="gene")
    rows, genes = _mask_coordinates(mask, t.shape)
    tv, pv = _take(t, rows, genes), _take(p, rows, genes)
    diff = tv - pv
    per_gene = _grouped_pearson(tv, pv, genes, t.shape[1])
    scorable = per_gene[~np.isnan(per_gene)]
    index = cols if cols is not None else pd.RangeIndex(t.shape[1])
    return {
        "rmse": float(np.sqrt(np.mean(diff * diff))),
        "mae": float(np.mean(np.abs(diff))),
        "pearson": _pearson_1d(tv, pv),
        "spearman": _pearson_1d(rankdata(tv), rankdata(pv)),
        "pcc_per_gene": pd.Series(per_gene, index=index, name="PCC"),
        "pcc_gene_median": float(np.median(scorable)) if scorable.size else float("nan"),
        "n_entries": int(tv.size),
    }


def _mask_coordinates(mask: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    if sparse.issparse(mask):
        coo = sparse.coo_matrix(mask)
        keep = coo.data != 0
        m_shape, rows, cols = coo.shape, coo.row[keep], coo.col[keep]
    else:
        arr = np.asarray(mask.to_numpy() if isinstance(mask, pd.DataFrame) else mask)
        if arr.dtype != bool:
            if not np.isin(arr, (0, 1)).all():
                raise InputError(
                    "mask holds values other than True/False (0/1): pass a boolean array "
                    "with True on the held-out entries"
                )
            arr = arr.astype(bool)
        m_shape = arr.shape
        rows, cols = np.nonzero(arr)
    if tuple(m_shape) != tuple(shape):
        raise InputError(
            f"mask has shape {tuple(m_shape)} but true/pred have shape {tuple(shape)}: pass "
            "a boolean mask of the same shape"
        )
    if rows.size == 0:
        raise EmptyDataError(
            "mask selects no entries: mark the held-out entries with True to score them"
        )
    order = np.lexsort((rows, cols))
    return rows[order].astype(np.intp), cols[order].astype(np.intp)


# --------------------------------------------------------------------------------------
# Cell-type fractions (deconvolution)
# --------------------------------------------------------------------------------------


def fraction_scores(true_df: Any, pred_df: Any, *, normalize: bool = True) -> dict[str, Any]:
    """Compare true and predicted cell-type fractions per spot (deconvolution).

    Parameters
    ----------
    true_df, pred_df
        ``(n_spots, n_types)`` non-negative fractions/abundances, normally DataFrames whose
        columns are cell types: ``pred_df`` is aligned to ``true_df`` by column (and index)
        names, and different cell-type sets raise :class:`~cellweave.errors.InputError`.
    normalize
        Scale each spot's row to sum 1 first (so abundances, e.g. cell counts, compare as
        proportions). JS always compares normalised rows.

    Returns
    -------
    dict with

    ``js_mean``
        Mean over spots of the JS divergence (nats, in [0, ln 2]) between true and predicted
        composition.
    ``js_per_spot``
        Series of the per-spot JS divergences.
    ``rmse``
        RMSE over all spot x type entries.
    ``pcc_per_type``, ``pcc_mean``
        Pearson r across spots per cell type (NaN for a type with constant true fraction) and
        its NaN-aware mean.
    ``per_type``
        :func:`gene_scores` table (PCC, SSIM, RMSE, JS) over cell types, the
        SpatialBenchmarking deconvolution protocol; feed several methods' tables to
        :func:`accuracy_score` to rank them.
    """
    t, p, rows, cols = paired_matrices(true_df, pred_df, feature="cell type")
    t = t.toarray() if sparse.issparse(t) else t
    p = p.toarray() if sparse.issparse(p) else p
    for arr, name in ((t, "true_df"), (p, "pred_df")):
        if (arr < 0).any():
            raise InputError(
                f"{name} holds negative fractions: cell-type fractions must be non-negative; "
                "clip them (np.clip(x, 0, None)) first"
            )
    tp, pp = to_probabilities(t, axis=1), to_probabilities(p, axis=1)
    if normalize:
        t, p = tp, pp
    index = cols if cols is not None else pd.RangeIndex(t.shape[1])
    spots = rows if rows is not None else pd.RangeIndex(t.shape[0])
    js_spot = _js_probabilities(tp, pp, axis=1)
    per_type = gene_scores(t, p, genes=index)
    per_type.index.name = "cell_type"
    pcc_type = per_type["PCC"].rename("PCC")
    diff = t - p
    return {
        "js_mean": float(js_spot.mean()),
        "js_per_spot": pd.Series(js_spot, index=spots, name="JS"),
        "rmse": float(np.sqrt(np.mean(diff * diff))),
        "pcc_per_type": pcc_type,
        "pcc_mean": float(_nan_aggregate(pcc_type.to_numpy()[:, None], "mean")[0]),
        "per_type": per_type,
    }
