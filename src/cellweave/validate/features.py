"""Comparing the features of two data sets."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd
from anndata import AnnData

from ..errors import (
    NoSharedFeaturesError,
)

__all__ = ["shared_features"]


_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")


def _as_index(x: AnnData | pd.Index | Sequence[str]) -> pd.Index:
    if isinstance(x, AnnData):
        return x.var_names
    return pd.Index(x)


def _mismatch_hint(a: pd.Index, b: pd.Index) -> str:
    """Guess why two feature lists barely overlap."""
    ens_a = a.astype(str).str.match(_ENSEMBL.pattern).mean() if len(a) else 0.0
    ens_b = b.astype(str).str.match(_ENSEMBL.pattern).mean() if len(b) else 0.0
    if (ens_a > 0.5) != (ens_b > 0.5):
        return (
            "one uses Ensembl IDs and the other gene symbols: use the same kind of names in "
            "both, e.g. adata.var_names = adata.var['gene_symbols'] (or the column that holds "
            "them), then adata.var_names_make_unique()"
        )
    upper_a = set(a.astype(str).str.upper())
    upper_b = set(b.astype(str).str.upper())
    if len(upper_a & upper_b) > len(set(a.astype(str)) & set(b.astype(str))):
        return (
            "the names differ in upper/lower case (e.g. human 'GAPDH' vs mouse 'Gapdh'): check "
            "that both data sets come from the same species and use the same case"
        )
    return (
        "check that both data sets come from the same species and name features the same way "
        "(gene symbols vs Ensembl IDs, case, version suffixes)"
    )


def shared_features(
    a: AnnData | pd.Index | Sequence[str],
    b: AnnData | pd.Index | Sequence[str],
    *,
    min_shared: int = 1,
    names: tuple[str, str] = ("first data set", "second data set"),
) -> pd.Index:
    """Return the features (``var_names``) present in both ``a`` and ``b``, in ``a``'s order.

    Parameters
    ----------
    a, b
        AnnData objects (their ``var_names`` are used) or lists of feature names.
    min_shared
        Raise when fewer features than this are shared.
    names
        How to call ``a`` and ``b`` in the message.

    Raises
    ------
    NoSharedFeaturesError
        Fewer than ``min_shared`` features are shared; the message guesses why.
    """
    idx_a, idx_b = _as_index(a), _as_index(b)
    shared = idx_a[idx_a.isin(idx_b)].unique()
    if len(shared) < min_shared:
        raise NoSharedFeaturesError(
            f"{names[0]} ({len(idx_a)} features) and {names[1]} ({len(idx_b)} features) share "
            f"{len(shared)} feature name(s), but at least {min_shared} are required: "
            f"{_mismatch_hint(idx_a, idx_b)}"
        )
    return shared
