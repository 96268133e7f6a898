"""Checks that an input means something: enough observations, labels with classes.

The entry points call these once, up front, so that a single spot is not "imputed", a
reference without cell types does not give zero-column fractions, and so on. Each minimum is
named where it is used (e.g. ``MIN_SPOTS`` of impute), and the message says it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import EmptyDataError, InputError, InvalidOptionError
from ._format import _shown

__all__ = ["check_labels", "check_min_obs", "check_seed", "warn_unlabelled_classes"]

#: Seeds numpy accepts: 0 <= seed < 2**32.
_MAX_SEED = 2**32 - 1


def check_min_obs(adata: Any, minimum: int, *, what: str = "cells", name: str = "adata") -> None:
    """Raise :class:`EmptyDataError` when ``adata`` has fewer than ``minimum`` observations.

    Parameters
    ----------
    adata
        AnnData or MuData (anything with ``n_obs``).
    minimum
        The fewest observations the method can use.
    what
        What the observations are ("spots", "cells"), for the message.
    name
        How to call ``adata`` in the message.
    """
    n = int(adata.n_obs)
    if n < minimum:
        raise EmptyDataError(
            f"{name} has too few {what} ({n}; at least {minimum} are needed): pass data with "
            f"{minimum} or more {what} (check any subsetting)"
        )


def check_labels(
    labels: Any, *, where: str, min_classes: int = 2, fix: str = "pass another column"
) -> pd.Series:
    """Return ``labels`` as a Series, raising :class:`InputError` unless its non-missing
    values hold at least ``min_classes`` distinct classes.

    Parameters
    ----------
    labels
        One label per observation (NaN/None: unknown).
    where
        Where the labels come from (``"adata_sc.obs['cell_type']"``), for the message.
    min_classes
        The fewest classes the method needs (2 for fractions and label transfer: with one
        class every answer is that class).
    fix
        How to fix it, to end the message.
    """
    series = labels if isinstance(labels, pd.Series) else pd.Series(np.asarray(labels))
    known = series.dropna()
    classes = pd.unique(known.astype(str))
    if len(classes) < min_classes:
        if len(known) == 0:
            found = f"only missing values ({len(series)} NaN/None)"
        else:
            found = f"{len(classes)} class(es) {_shown(classes)}"
        raise InputError(f"{where} holds {found}, but {min_classes} classes are needed: {fix}")
    return series


def warn_unlabelled_classes(labels: Any, kept: Any, *, where: str) -> list[str]:
    """Warn (one :class:`~cellweave.errors.CellweaveWarning` line) about the classes of
    ``labels`` none of whose cells keeps its label in ``kept`` (same length, ``None``/NaN for
    unlabelled): a model trained on ``kept`` cannot predict them. Returns those classes."""
    import warnings

    from ..errors import CellweaveWarning

    every = set(pd.Series(np.asarray(labels, dtype=object)).dropna().astype(str))
    present = set(pd.Series(np.asarray(kept, dtype=object)).dropna().astype(str))
    missing = sorted(every - present)
    if missing:
        warnings.warn(
            f"{len(missing)} class(es) of {where} have no labelled cell and can never be "
            f"predicted: {_shown(missing)}; label more cells (a larger labelled fraction)",
            CellweaveWarning,
            stacklevel=2,
        )
    return missing


def check_seed(random_state: Any, *, allow_generator: bool = False) -> Any:
    """``random_state`` as an int seed in ``[0, 2**32 - 1]`` (what numpy accepts), or a
    :class:`numpy.random.Generator` as it is when ``allow_generator``; anything else is an
    :class:`InvalidOptionError` (never numpy's own error after work has started)."""
    if allow_generator and isinstance(random_state, np.random.Generator):
        return random_state
    is_int = isinstance(random_state, int | np.integer) and not isinstance(random_state, bool)
    if not is_int or not 0 <= int(random_state) <= _MAX_SEED:
        also = " or a numpy Generator" if allow_generator else ""
        raise InvalidOptionError(
            f"random_state={random_state!r} is invalid; pass an integer in [0, {_MAX_SEED}]{also}"
        )
    return int(random_state)
