"""Count sampling shared by the simulators (NB counts, dropout, Bernoulli, thinning)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["apply_dropout", "sample_nb", "thin_counts"]


def sample_nb(
    mean: np.ndarray, dispersion: float | np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw negative-binomial counts with the given mean and inverse dispersion ``theta``.

    Parametrised as in scvi-tools: ``Var = mean + mean**2 / theta``. Sampled as a
    gamma-Poisson mixture, so it is vectorised over any shape and broadcasts ``dispersion``.

    Parameters
    ----------
    mean
        Expected counts (non-negative), any shape.
    dispersion
        Inverse dispersion ``theta > 0`` (scalar or broadcastable to ``mean``); large values
        approach Poisson.
    rng
        Random generator.

    Returns
    -------
    Integer counts (``int32``) of the shape of ``mean``.
    """
    mean = np.asarray(mean, dtype=np.float64)
    theta = np.broadcast_to(np.asarray(dispersion, dtype=np.float64), mean.shape)
    if np.any(theta <= 0):
        raise ValueError("dispersion (theta) must be positive")
    rate = rng.gamma(shape=theta, scale=np.divide(mean, theta))
    return rng.poisson(rate).astype(np.int32)


def apply_dropout(
    counts: np.ndarray, rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Zero each entry independently with probability ``rate``.

    Returns the dropped-out counts and the boolean mask of entries that were kept.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    keep = rng.random(counts.shape) >= rate
    return np.where(keep, counts, 0).astype(counts.dtype), keep


def thin_counts(
    pooled: sp.csr_matrix | np.ndarray,
    depth: float | np.ndarray | None,
    rng: np.random.Generator,
    *,
    totals: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Binomial thinning of every row of ``pooled`` to ``depth`` expected counts (never
    upwards): each count of a row kept with probability ``min(1, depth / row total)``.

    Parameters
    ----------
    pooled
        Counts (CSR or dense, integer values), rows thinned independently.
    depth
        Expected counts per row after thinning: one value, or one per row; ``None`` keeps
        the counts.
    rng
        Random generator; the draws go over the stored entries in row-major order (entries
        of 0 draw nothing), so the same counts dense or sparse thin alike.
    totals
        Row totals of ``pooled`` when already known.

    Returns
    -------
    The thinned counts (CSR, float32, explicit zeros removed).
    """
    pooled = sp.csr_matrix(pooled)
    out = pooled.astype(np.float32)
    if depth is None:
        return out
    if totals is None:
        totals = np.asarray(pooled.sum(axis=1), dtype=np.float64).ravel()
    depth = np.broadcast_to(np.asarray(depth, dtype=np.float64), totals.shape)
    keep = np.minimum(1.0, depth / np.where(totals > 0, totals, 1.0))
    rows = np.repeat(np.arange(pooled.shape[0]), np.diff(pooled.indptr))
    n = np.rint(pooled.data).astype(np.int64)
    out.data = rng.binomial(n, keep[rows]).astype(np.float32)
    out.eliminate_zeros()
    return out
