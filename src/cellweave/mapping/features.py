"""Feature preparation: make a scRNA-seq reference and a spatial data set comparable.

Both data sets are reduced to the genes they share, normalized the same way (each cell/spot
scaled to a common total, then ``log1p``), z-scored per gene *within each platform* (which
removes gene-wise platform effects: capture efficiency, probe efficiency, binarization), and
projected on the principal components of the two platforms stacked. Mappings compare cells
and spots in that space (cosine similarity).

The defaults (``normalize="log_total"``, ``scale=True``, ``n_pcs=30``, no denoising, no gene
weights) were chosen by measurement on the leave-gene-out protocol (``docs/mapping.md``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._utils import RandomState, check_random_state, to_dense
from ..errors import EmptyDataError, InputError, MissingKeyError, NotCountsError
from ..validate import (
    check_adata,
    check_unique_names,
    log_transformed_problem,
    matrix_label,
    shared_features,
)

__all__ = [
    "GENE_WEIGHT_TEMPERATURE",
    "NORMALIZATIONS",
    "Features",
    "check_inputs",
    "check_totals",
    "learned_gene_weights",
    "prepare_features",
    "row_totals",
    "shared_genes",
    "to_dense",
]

NORMALIZATIONS = ("log_total", "total", "log", "none")
#: Default cap on the genes used: the most variable shared genes beyond it (bounds memory).
MAX_GENES = 2000
Normalization = Literal["log_total", "total", "log", "none"]

# Above this many genes PCA switches from an exact eigendecomposition of the gene covariance
# to a randomized SVD.
_EXACT_PCA_GENES = 4000


@dataclass
class Features:
    """Two platforms in one feature space.

    Attributes
    ----------
    sc
        ``(n_used_cells, d)`` float32 features of the reference cells that have counts on the
        shared genes (``cell_used``).
    sp
        ``(n_spots, d)`` float32 features of every spot.
    genes
        The shared genes, in the order used.
    cell_used
        ``(n_cells,)`` boolean: the cell has a non-zero total over ``genes`` (only those
        cells can be mapped).
    cell_totals
        ``(n_cells,)`` total of every cell over ``genes`` (input scale).
    spot_totals
        ``(n_spots,)`` total of every spot over ``genes`` (input scale).
    params
        The options used (for ``uns``).
    """

    sc: np.ndarray
    sp: np.ndarray
    genes: pd.Index
    cell_used: np.ndarray
    cell_totals: np.ndarray
    spot_totals: np.ndarray
    params: dict[str, Any]

    @property
    def spot_empty(self) -> np.ndarray:
        """Spots whose total over the shared genes is zero."""
        return self.spot_totals <= 0

    @property
    def sp_mapped(self) -> np.ndarray:
        """Features of the spots that are mapped (those not :attr:`spot_empty`)."""
        return self.sp[~self.spot_empty]


def row_totals(X: Any) -> np.ndarray:
    """Row sums of a dense or sparse matrix as a float64 vector."""
    return np.asarray(X.sum(axis=1), dtype=np.float64).ravel()


def shared_genes(
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    genes: Sequence[str] | None = None,
    min_shared: int = 2,
) -> pd.Index:
    """The genes present in both data sets (in the spatial data's order).

    Parameters
    ----------
    adata_sc, adata_sp
        Reference and spatial data.
    genes
        Restrict to these genes (each must be in both data sets).
    min_shared
        Raise when fewer genes are shared.

    Raises
    ------
    DuplicateNamesError
        A data set repeats a gene name.
    NoSharedFeaturesError
        Fewer than ``min_shared`` genes are shared.
    MissingKeyError
        A requested gene is absent from one data set.
    """
    for adata, name in ((adata_sc, "adata_sc"), (adata_sp, "adata_sp")):
        check_unique_names(adata, axis="var", name=name)
    shared = shared_features(
        adata_sp, adata_sc, min_shared=min_shared, names=("adata_sp", "adata_sc")
    )
    if genes is None:
        return shared
    requested = pd.Index([str(g) for g in genes])
    if not requested.is_unique:
        dups = requested[requested.duplicated()].unique()
        raise InputError(
            f"genes lists {len(dups)} gene(s) twice (e.g. {list(dups[:3])}): pass each gene once"
        )
    missing = requested[~requested.isin(shared)]
    if len(missing):
        raise MissingKeyError(
            f"{len(missing)} of the requested genes are not in both data sets "
            f"(e.g. {list(missing[:3])}): pass genes present in adata_sc.var_names and "
            "adata_sp.var_names, or genes=None to use every shared gene"
        )
    if len(requested) < min_shared:
        raise InputError(
            f"genes lists {len(requested)} gene(s), but at least {min_shared} are needed to "
            "compare cells and spots: pass more genes or genes=None"
        )
    return requested


def _normalize(X: np.ndarray, totals: np.ndarray, how: str) -> np.ndarray:
    """Scale rows to a total of ``n_genes`` (mean 1 per gene) and/or take ``log1p``."""
    if how in ("log_total", "total"):
        scale = np.divide(X.shape[1], totals, out=np.zeros_like(totals), where=totals > 0)
        X = X * scale[:, None].astype(X.dtype)
    if how in ("log_total", "log"):
        X = np.log1p(np.clip(X, 0.0, None))
    return X


def _mean_scale(X: np.ndarray) -> np.ndarray:
    """Divide every column by its mean (non-negative values stay non-negative and sums of
    rows stay sums); all-zero columns stay zero."""
    mean = X.mean(axis=0, dtype=np.float64)
    scale = np.where(mean > 0, 1.0 / np.where(mean > 0, mean, 1.0), 0.0)
    return X * scale.astype(X.dtype)


def _zscore(X: np.ndarray) -> np.ndarray:
    """Centre and scale every column; constant columns become zero."""
    sd = X.std(axis=0, dtype=np.float64)
    mean = X.mean(axis=0, dtype=np.float64)
    scale = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0)
    return ((X - mean.astype(X.dtype)) * scale.astype(X.dtype)).astype(X.dtype, copy=False)


def _principal_axes(M: np.ndarray, n_pcs: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_genes, n_pcs)`` principal axes of the (centred) rows of ``M``, signs fixed."""
    mean = M.mean(axis=0, dtype=np.float64)
    if M.shape[1] <= _EXACT_PCA_GENES:
        # gene covariance accumulated in float64 over row blocks (no centred copy of M)
        cov = np.zeros((M.shape[1], M.shape[1]))
        step = max(1, 2**22 // M.shape[1])
        for start in range(0, M.shape[0], step):
            block = M[start : start + step].astype(np.float64) - mean
            cov += block.T @ block
        _, evecs = np.linalg.eigh(cov)
        axes = evecs[:, ::-1][:, :n_pcs]
    else:
        from sklearn.utils.extmath import randomized_svd

        seed = int(rng.integers(0, 2**31 - 1))
        _, _, vt = randomized_svd(M - mean.astype(M.dtype), n_pcs, random_state=seed)
        axes = vt.T
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
    return (axes * np.where(signs == 0, 1.0, signs)).astype(M.dtype)


def _knn_smooth(Z: np.ndarray, k: int) -> np.ndarray:
    """Average every row with its ``k`` nearest rows (cosine, self included)."""
    from ..ot import topk_similar, unit_rows

    unit = unit_rows(Z)
    idx, _ = topk_similar(unit, unit, k=min(k + 1, len(Z)))
    return Z[idx].mean(axis=1)


#: Softmax temperature of ``gene_weights="learned"`` (see :func:`learned_gene_weights`).
GENE_WEIGHT_TEMPERATURE = 0.5


def _weights_vector(gene_weights: Any, genes: pd.Index) -> np.ndarray | None:
    if gene_weights is None:
        return None
    if isinstance(gene_weights, Mapping | pd.Series):
        series = pd.Series(gene_weights, dtype=np.float64)
        w = series.reindex(genes).fillna(1.0).to_numpy()
    else:
        w = np.asarray(gene_weights, dtype=np.float64).ravel()
        if w.shape != (len(genes),):
            raise InputError(
                f"gene_weights has {w.size} values for {len(genes)} shared genes: pass one "
                "weight per shared gene or a {gene: weight} mapping"
            )
    if not np.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
        raise InputError("gene_weights must be finite, non-negative and not all zero")
    return w


def prepare_features(
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    genes: Sequence[str] | None = None,
    normalize: Normalization | None = "log_total",
    scale: bool | str = True,
    n_pcs: int | None = 30,
    denoise: int = 0,
    gene_weights: Mapping[str, float] | Sequence[float] | None = None,
    max_genes: int | None = MAX_GENES,
    layer_sc: str | None = None,
    layer_sp: str | None = None,
    random_state: RandomState = 0,
    warn: bool = True,
) -> Features:
    """Put the reference cells and the spots in one comparable feature space.

    Parameters
    ----------
    adata_sc
        Reference cells x genes: raw counts, or binarized/continuous values (non-negative).
    adata_sp
        Spots (or single cells) x genes: counts or intensities (non-negative).
    genes
        Genes to use (default: every shared gene).
    normalize
        ``"log_total"`` (default): each row scaled to a total of ``n_genes`` then ``log1p``;
        ``"total"``: scaling only; ``"log"``: ``log1p`` only; ``"none"``.
    scale
        ``True``: z-score every gene within each platform (removes gene-wise platform
        effects); ``"mean"``: divide every gene by its mean within each platform (removes
        multiplicative platform effects and keeps values non-negative, so that sums of cells
        still model a spot: used by the gradient mapper); ``False``: no scaling.
    n_pcs
        Project on this many principal components of both platforms stacked (``None``: keep
        the genes).
    denoise
        Average each reference cell's features with its ``denoise`` nearest reference cells
        (0: off). Measured to lower accuracy on the benchmark data; off by default.
    gene_weights
        Optional weight per gene (a mapping or one value per shared gene), applied after
        scaling: uninformative genes can weigh less. ``map_cells(gene_weights="learned")``
        computes them from a first mapping (:func:`learned_gene_weights`).
    max_genes
        With more shared genes than this, keep the ``max_genes`` most variable ones (variance
        of the normalized reference expression); ``None``: keep all. Bounds memory on
        whole-transcriptome data.
    layer_sc, layer_sp
        Layers to read instead of ``X``.
    random_state
        Seed (randomized PCA on very many genes only).
    warn
        Warn about spots and cells without counts on the shared genes (``map_cells`` warns
        once in :func:`check_inputs` and passes ``False``).

    Returns
    -------
    :class:`Features`.

    Raises
    ------
    NoSharedFeaturesError, DuplicateNamesError
        See :func:`shared_genes`.
    EmptyDataError
        No reference cell has counts on the shared genes.
    InputError
        Negative values, or an unknown option.
    """
    if normalize is None:  # "none" arrives as None from the command line
        normalize = "none"
    if normalize not in NORMALIZATIONS:
        raise InputError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    rng = check_random_state(random_state)
    full_sc = check_adata(adata_sc, layer=layer_sc, name="adata_sc", allow_zero_cells=True)
    full_sp = check_adata(adata_sp, layer=layer_sp, name="adata_sp", allow_zero_cells=True)
    use = shared_genes(adata_sc, adata_sp, genes=genes)
    if max_genes is not None and len(use) > max_genes:
        use = _most_variable(full_sc, adata_sc.var_names.get_indexer(use), use, int(max_genes))
    X_sc = _columns(full_sc, adata_sc.var_names.get_indexer(use), "adata_sc")
    X_sp = _columns(full_sp, adata_sp.var_names.get_indexer(use), "adata_sp")
    cell_totals, spot_totals = row_totals(X_sc), row_totals(X_sp)
    cell_used = cell_totals > 0
    check_totals(cell_totals, spot_totals, n_genes=len(use), warn=warn)
    A = _normalize(to_dense(X_sp, np.float32), spot_totals, normalize)
    B = _normalize(to_dense(X_sc[cell_used], np.float32), cell_totals[cell_used], normalize)
    if scale == "mean":
        A, B = _mean_scale(A), _mean_scale(B)
    elif scale is True:
        A, B = _zscore(A), _zscore(B)
    elif scale is not False:
        raise InputError(f"scale must be True (z-score), 'mean' or False, got {scale!r}")
    weights = _weights_vector(gene_weights, use)
    if weights is not None:
        A, B = A * weights, B * weights
    n_comps = None if n_pcs is None else int(min(n_pcs, len(use), len(A) + len(B) - 1))
    if n_comps is not None and n_comps < len(use):
        axes = _principal_axes(np.vstack([A, B]), n_comps, rng)
        A, B = A @ axes, B @ axes
    if denoise:
        B = _knn_smooth(B, int(denoise))
    params = {
        "normalize": normalize,
        "scale": scale,
        "n_pcs": n_comps,
        "denoise": int(denoise),
        "gene_weights": None if weights is None else weights.tolist(),
        "max_genes": max_genes,
        "n_genes": len(use),
    }
    return Features(
        sc=B.astype(np.float32),
        sp=A.astype(np.float32),
        genes=use,
        cell_used=cell_used,
        cell_totals=cell_totals,
        spot_totals=spot_totals,
        params=params,
    )


def check_totals(
    cell_totals: np.ndarray, spot_totals: np.ndarray, *, n_genes: int, warn: bool = True
) -> None:
    """Refuse a reference or spatial data set without counts on the shared genes; warn (one
    line each) about the cells and spots without any, which are left out of the mapping."""
    for totals, what, name in (
        (cell_totals, "reference cell", "adata_sc"),
        (spot_totals, "spot", "adata_sp"),
    ):
        if not (totals > 0).any():
            raise EmptyDataError(
                f"no {what} has a non-zero value on the {n_genes} shared genes: check that "
                f"{name} holds expression (not an empty layer) for those genes"
            )
    left_out = (
        (
            spot_totals,
            "spots",
            "adata_sp",
            "are not mapped (predictions: the reference "
            "average; fractions: the reference's type frequencies)",
        ),
        (cell_totals, "reference cells", "adata_sc", "are mapped nowhere and count in no fraction"),
    )
    for totals, what, name, fate in left_out:
        n_zero = int((totals <= 0).sum())
        if warn and n_zero:
            warnings.warn(
                f"{n_zero} of {len(totals)} {what} have no counts on the shared genes: they "
                f"{fate}; drop them first, e.g. sc.pp.filter_cells({name}, min_counts=1)",
                UserWarning,
                stacklevel=3,
            )


def check_inputs(
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    genes: Sequence[str] | None = None,
    layer_sc: str | None = None,
    layer_sp: str | None = None,
    normalize: Normalization | None = "log_total",
) -> pd.Index:
    """Every check of :func:`prepare_features` on the data, made once before any work (as
    ``map_cells`` does for every solver): AnnData, unique names, finite non-negative values,
    at least two shared genes, counts on them in some cell and some spot (one warning line
    for the cells and spots without), and, when ``normalize`` takes ``log1p``, input not
    ``log1p``-transformed already (:func:`cellweave.validate.log_transformed_problem`).

    Returns
    -------
    The shared genes.

    Raises
    ------
    NoSharedFeaturesError, DuplicateNamesError, NonFiniteError, EmptyDataError, MissingKeyError
        See :func:`prepare_features`.
    NotCountsError
        ``normalize`` is ``"log_total"`` or ``"log"`` but a data set is log-transformed.
    """
    full_sc = check_adata(adata_sc, layer=layer_sc, name="adata_sc", allow_zero_cells=True)
    full_sp = check_adata(adata_sp, layer=layer_sp, name="adata_sp", allow_zero_cells=True)
    use = shared_genes(adata_sc, adata_sp, genes=genes)
    X_sc = _columns(full_sc, adata_sc.var_names.get_indexer(use), "adata_sc")
    X_sp = _columns(full_sp, adata_sp.var_names.get_indexer(use), "adata_sp")
    check_totals(row_totals(X_sc), row_totals(X_sp), n_genes=len(use))
    if normalize in ("log_total", "log"):
        for adata, X, name, layer in (
            (adata_sp, full_sp, "adata_sp", layer_sp),
            (adata_sc, full_sc, "adata_sc", layer_sc),
        ):
            problem = log_transformed_problem(X, uns=adata.uns)
            if problem is not None:
                raise NotCountsError(
                    f"{matrix_label(name, layer)} looks log-transformed already ({problem}), "
                    f"and normalize={normalize!r} would take log1p again: pass the raw counts "
                    f"(e.g. layer_{name[-2:]}='counts'), or normalize='none' to map the values "
                    "as they are"
                )
    return use


def _most_variable(X: Any, cols: np.ndarray, genes: pd.Index, n: int) -> pd.Index:
    """The ``n`` genes of ``genes`` (columns ``cols`` of ``X``) with the largest variance of
    ``log1p`` of total-normalized reference expression, in their original order."""
    X = X[:, cols]
    totals = row_totals(X)
    scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
    if sparse.issparse(X):
        Y = sparse.csr_matrix(sparse.diags(scale) @ X, dtype=np.float64)
        Y.data = np.log1p(Y.data)
        mean = np.asarray(Y.mean(axis=0)).ravel()
        var = np.asarray(Y.multiply(Y).mean(axis=0)).ravel() - mean**2
    else:
        var = np.log1p(np.asarray(X, dtype=np.float64) * scale[:, None]).var(axis=0)
    keep = np.sort(np.argsort(-var, kind="stable")[:n])
    return genes[keep]


def _columns(X: Any, cols: np.ndarray, name: str) -> Any:
    """The columns ``cols`` of a validated matrix, checked to be non-negative."""
    X = X[:, cols]
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if values.size and np.nanmin(values) < 0:
        raise InputError(
            f"{name} holds negative values on the shared genes, but counts, intensities or "
            "binary values (non-negative) are required: pass the unscaled data (e.g. "
            "layer='counts')"
        )
    return X


def learned_gene_weights(
    predicted: np.ndarray, observed: Any, *, temperature: float = GENE_WEIGHT_TEMPERATURE
) -> np.ndarray:
    """Attention over genes from how well a first mapping reproduces each one.

    ``r_g`` is the Pearson correlation across spots between a gene's in-sample prediction
    through a first, unweighted mapping (``predicted``, relative expression) and its observed
    relative expression (``observed``, each spot divided by its total over the genes); the
    weights are ``n_genes * softmax(r / temperature)`` (mean 1), so genes the two platforms
    disagree on (platform-specific, noisy or unmeasured) weigh less in the second mapping.

    Parameters
    ----------
    predicted, observed
        ``(n_spots, n_genes)`` arrays over the same genes.
    temperature
        Softmax temperature: lower concentrates the weight on the best-agreeing genes.

    Returns
    -------
    ``(n_genes,)`` non-negative weights with mean 1.
    """
    if not temperature > 0:
        raise InputError(f"temperature={temperature!r} must be positive; pass e.g. 0.2")
    P = np.asarray(predicted, dtype=np.float64)
    O = np.asarray(observed.toarray() if sparse.issparse(observed) else observed, dtype=np.float64)
    P = P - P.mean(axis=0)
    O = O - O.mean(axis=0)
    denom = np.sqrt((P * P).sum(axis=0) * (O * O).sum(axis=0))
    r = np.divide((P * O).sum(axis=0), denom, out=np.zeros(P.shape[1]), where=denom > 0)
    logits = r / temperature
    w = np.exp(logits - logits.max())
    return w * (len(w) / w.sum())
