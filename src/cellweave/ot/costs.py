"""Transport costs between two sets of feature vectors (rows).

- :func:`unit_rows`: rows scaled to unit Euclidean norm (float32), so that dot products are
  cosine similarities.
- :func:`cosine_cost`: dense ``1 - cos`` between every pair of rows (float64).
- :func:`sqeuclidean_cost`: dense squared Euclidean distances.
- :func:`pair_cost`: either cost on given pairs ``(rows[e], cols[e])`` only (candidate pairs).
- :func:`normalize_cost`: a cost divided by its maximum or mean, so that the entropic
  regularization (or the weight of a cost term) does not depend on the cost's scale.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from .._docs import doc_features_ab, doc_params
from ..errors import InputError

__all__ = ["cosine_cost", "normalize_cost", "pair_cost", "sqeuclidean_cost", "unit_rows"]


def unit_rows(X: np.ndarray) -> np.ndarray:
    """``X`` as float32 with every row scaled to unit Euclidean norm (zero rows stay zero).

    Parameters
    ----------
    X
        ``(n, d)`` features.

    Returns
    -------
    ``(n, d)`` float32 array.
    """
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


@doc_params(features=doc_features_ab)
def cosine_cost(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Dense float64 ``1 - cosine similarity`` between the rows of ``A`` and ``B``.

    Parameters
    ----------
    {features}

    Returns
    -------
    ``(n, m)`` float64 cost in ``[0, 2]``.
    """
    return 1.0 - unit_rows(A).astype(np.float64) @ unit_rows(B).astype(np.float64).T


@doc_params(features=doc_features_ab)
def sqeuclidean_cost(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Dense float64 squared Euclidean distances between the rows of ``A`` and ``B``.

    Parameters
    ----------
    {features}

    Returns
    -------
    ``(n, m)`` float64 cost.
    """
    return cdist(np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64), "sqeuclidean")


@doc_params(features=doc_features_ab)
def pair_cost(
    A: np.ndarray,
    B: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    metric: str = "sqeuclidean",
) -> np.ndarray:
    """The cost of the pairs ``(A[rows[e]], B[cols[e]])`` only (no dense matrix).

    Parameters
    ----------
    {features}
    rows, cols
        Indices of the pairs into ``A`` and ``B``.
    metric
        ``"sqeuclidean"`` or ``"cosine"`` (``1 - cos``, clipped to ``[0, 2]``).

    Returns
    -------
    float64 cost, one value per pair.
    """
    if metric == "sqeuclidean":
        A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
        return ((A[rows] - B[cols]) ** 2).sum(1)
    if metric == "cosine":
        cos = (unit_rows(A)[rows] * unit_rows(B)[cols]).sum(1).astype(np.float64)
        return 1.0 - np.clip(cos, -1.0, 1.0)
    raise InputError(f"metric must be 'sqeuclidean' or 'cosine', got {metric!r}")


def normalize_cost(C: np.ndarray, *, by: str = "max") -> np.ndarray:
    """``C`` divided by its maximum (``by="max"``) or mean (``by="mean"``), at least ``1e-12``.

    Parameters
    ----------
    C
        Cost values (any shape).
    by
        ``"max"`` or ``"mean"``.
    """
    if by not in ("max", "mean"):
        raise InputError(f"by must be 'max' or 'mean', got {by!r}")
    scale = C.max() if by == "max" else C.mean()
    return C / max(float(scale), 1e-12)
