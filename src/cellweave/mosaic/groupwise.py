"""One-vs-rest differential tests of every group of a column (scvi-tools'
``differential_expression(groupby=..., group1=None)``), on :func:`.analysis.differential`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import EmptyDataError, InputError, MissingKeyError

__all__ = ["groups_of", "one_vs_rest"]


def groups_of(model: Any, groupby: str | np.ndarray | pd.Series) -> list[str]:
    """The groups of ``groupby`` (an ``mdata.obs`` column or one value per cell) in their
    category order (else sorted), missing values left out."""
    if isinstance(groupby, str):
        if groupby not in model.mdata.obs.columns:
            raise MissingKeyError(f"mdata.obs has no column {groupby!r}: pass an existing column")
        values = model.mdata.obs[groupby]
    else:
        values = pd.Series(np.asarray(groupby, dtype=object))
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna().astype(str))
        groups = [str(c) for c in values.cat.categories if str(c) in present]
    else:
        groups = sorted(set(values.dropna().astype(str)))
    if len(groups) < 2:
        raise InputError(
            f"groupby holds {len(groups)} group(s): one-vs-rest needs 2 or more; pass another "
            "column"
        )
    return groups


def one_vs_rest(
    test: Callable[..., pd.DataFrame],
    model: Any,
    groupby: str | np.ndarray | pd.Series,
    *,
    groups: Sequence[str] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Test each group of ``groupby`` against every other cell with ``test`` (the pairwise
    :func:`~cellweave.mosaic.analysis.differential`) and stack the results.

    Returns
    -------
    A tidy DataFrame indexed by feature (each feature once per group, as scvi-tools), with
    ``comparison`` (``"<group> vs Rest"``), ``group1``, ``group2`` (``"Rest"``) and the
    columns of the pairwise test, each group's rows sorted by ``proba_de``.
    """
    chosen = groups_of(model, groupby) if groups is None else [str(g) for g in groups]
    tables = []
    for group in chosen:
        try:
            table = test(model, groupby, group, None, **options)
        except EmptyDataError:
            continue  # a requested group without cells, or one covering every cell
        table.insert(0, "group2", "Rest")
        table.insert(0, "group1", group)
        table.insert(0, "comparison", f"{group} vs Rest")
        tables.append(table)
    if not tables:
        raise EmptyDataError("no group has cells on both sides: check groupby and groups")
    return pd.concat(tables)
