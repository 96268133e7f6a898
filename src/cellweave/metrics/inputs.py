"""Inputs of the integration scores: embeddings as dense arrays, labels as integer codes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..errors import InputError
from .distributions import as_label_array, as_matrix

__all__ = ["CHUNK_ELEMENTS", "embedding_array", "label_codes", "need_groups", "scored_inputs"]

#: Elements of one distance chunk (rows x n) in silhouette / FOSCTTM (~64 MB of float64).
CHUNK_ELEMENTS = 8_000_000


def embedding_array(x: Any, name: str = "embedding") -> np.ndarray:
    mat, _, _ = as_matrix(x, name)
    return mat.toarray() if sparse.issparse(mat) else mat


def label_codes(labels: Any, name: str, n: int) -> tuple[np.ndarray, int]:
    """Integer codes ``0..k-1`` and ``k`` for a label vector of length ``n``."""
    codes, uniques = pd.factorize(as_label_array(labels, name, n), sort=True)
    return codes.astype(np.intp), len(uniques)


def scored_inputs(
    embedding: Any, labels: Any, batches: Any, what: str
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, int]:
    """Embedding, label codes and count, batch codes and count for the score bundle
    ``what``; labels and batches must each have 2 or more values, fewer than the cells."""
    x = embedding_array(embedding)
    n = x.shape[0]
    lab, n_lab = label_codes(labels, "labels", n)
    bat, n_bat = label_codes(batches, "batches", n)
    need_groups(n_lab, n, "labels", what)
    need_groups(n_bat, n, "batches", what)
    return x, lab, n_lab, bat, n_bat


def need_groups(k: int, n: int, name: str, what: str) -> None:
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
