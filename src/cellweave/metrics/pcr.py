"""Principal component regression (Büttner et al. 2018) as scib-metrics 0.5.10 computes it.

``principal_component_regression`` is the share of an embedding's variance that a categorical
covariate explains: all principal components are kept (``min(n_cells, n_dims)``), each PC's
R² against the centred one-hot covariate is weighted by the PC's variance. The least-squares
fit of a PC on a centred one-hot design is the PC's group means, so R² = between-group sum
of squares / total sum of squares. ``pcr_comparison`` compares an integrated embedding with
the unintegrated one, as scib-metrics' ``pcr_comparison`` (scaled, clipped at 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .inputs import embedding_array, label_codes

__all__ = ["pcr_comparison", "principal_component_regression"]

#: A variance share at float64 rounding level: the covariate explains nothing.
_NO_SHARE = float(np.finfo(np.float64).eps)


def principal_component_regression(embedding: Any, covariate: Any) -> float:
    """Variance-weighted R² of the principal components of ``embedding`` on a categorical
    covariate (scib-metrics ``principal_component_regression(..., categorical=True)``).

    Parameters
    ----------
    embedding
        ``(n_cells, n_dims)`` array.
    covariate
        Category per cell (e.g. the batch).

    Returns
    -------
    Share of the total variance explained by the covariate, in [0, 1]; NaN when a kept
    component has no variance (as scib-metrics).
    """
    x = embedding_array(embedding).astype(np.float64)
    codes, k = label_codes(covariate, "covariate", x.shape[0])
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    pcs = u * s
    variance = s**2 / (x.shape[0] - 1)
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    means = np.zeros((k, pcs.shape[1]))
    np.add.at(means, codes, pcs)
    means /= np.maximum(counts, 1.0)[:, None]
    between = (counts[:, None] * means**2).sum(axis=0)
    total = (pcs**2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.maximum(0.0, between / total)
    return float(r2 @ variance / variance.sum())


def pcr_comparison(pre: Any, post: Any, covariate: Any, *, scale: bool = True) -> float:
    """scib-metrics ``pcr_comparison``: how much less of the variance the covariate explains
    after integration than before.

    Parameters
    ----------
    pre
        Unintegrated ``(n_cells, n_dims_pre)`` embedding (e.g. PCA of RNA + LSI of ATAC).
    post
        Integrated ``(n_cells, n_dims)`` embedding of the same cells.
    covariate
        Batch per cell.
    scale
        ``(pcr_pre - pcr_post) / pcr_pre`` clipped at 0 (1 = the batch explains nothing
        after integration; 0 when it explained nothing before, ``pcr_pre == 0``, the limit
        of scib-metrics' clipped score); ``False``: ``pcr_post - pcr_pre``.

    Returns
    -------
    The comparison score; higher is better when ``scale``.
    """
    pre_x, post_x = embedding_array(pre), embedding_array(post)
    if pre_x.shape[0] != post_x.shape[0]:
        raise InputError(
            f"the unintegrated embedding has {pre_x.shape[0]} cells and the integrated one "
            f"{post_x.shape[0]}; pass both for the same cells in the same order"
        )
    before = principal_component_regression(pre_x, covariate)
    after = principal_component_regression(post_x, covariate)
    if not scale:
        return after - before
    if not before > _NO_SHARE:
        # the batch explained nothing before (e.g. one batch): scib-metrics divides by
        # ``before`` (a ZeroDivisionError at 0, rounding noise over rounding noise just above
        # it: 0.065 for one batch); the limit of its clipped score as ``before`` -> 0 is 0
        return 0.0
    return max(0.0, (before - after) / before)
