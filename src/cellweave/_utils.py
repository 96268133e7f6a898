"""Small helpers shared across cellweave: random state, device resolution, dense arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

__all__ = ["RandomState", "check_random_state", "to_dense"]

RandomState = int | np.random.Generator | None


def check_random_state(random_state: RandomState) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for ``random_state``.

    Parameters
    ----------
    random_state
        ``None`` (fresh entropy), an ``int`` seed, or a ``Generator`` (returned as is).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, int | np.integer):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state must be None, an int or a numpy Generator, got {random_state!r}")


def to_dense(X: Any, dtype: Any = np.float64) -> np.ndarray:
    """A dense ``dtype`` array of ``X``, copy-free when possible (sparse matrices are
    densified)."""
    if sparse.issparse(X):
        return X.toarray().astype(dtype, copy=False)
    return np.asarray(X, dtype=dtype)
