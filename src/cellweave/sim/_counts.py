"""Count sampling shared by the simulators (NB counts, dropout, Bernoulli)."""

from __future__ import annotations

import numpy as np

__all__ = ["apply_dropout", "sample_nb"]


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
