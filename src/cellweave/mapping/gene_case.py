"""Matching gene names that differ only in case (``gene_case=``).

scRNA-seq references and spatial panels often spell the same gene differently (``Gapdh`` /
``GAPDH``; Tangram lower-cases both). ``gene_case`` says how names are compared:

- ``"exact"`` (default): as written. When that finds few shared genes but a match up to case
  finds many, the error or warning says so and names this option;
- ``"insensitive"``: up to case; the shared genes take the spatial data's spelling;
- ``"upper"`` / ``"lower"``: every name of both data sets upper- / lower-cased first.

Two genes of one data set equal up to case (``Mt1`` and ``MT1``) cannot be told apart: they
are refused in one line. :func:`match_gene_case` returns the two data sets with their genes
so renamed, sharing every matrix with the inputs (nothing is copied or written).
"""

from __future__ import annotations

import warnings

import pandas as pd
from anndata import AnnData

from ..errors import DuplicateNamesError, InvalidOptionError

__all__ = ["GENE_CASES", "case_note", "check_gene_case", "match_gene_case", "same_gene"]

#: The values of ``gene_case``.
GENE_CASES = ("exact", "upper", "lower", "insensitive")
#: A match up to case is worth a note when it finds this many more genes than the exact one
#: (and at least twice as many).
CASE_NOTE_MIN_EXTRA = 10


def check_gene_case(gene_case: str) -> str:
    """``gene_case`` itself, or one :class:`InvalidOptionError` line naming the values."""
    if gene_case not in GENE_CASES:
        raise InvalidOptionError(
            f"gene_case={gene_case!r} is not one of {', '.join(GENE_CASES)}: pass "
            "'insensitive' to match gene names up to case, 'exact' to match them as written"
        )
    return gene_case


def _keys(names: pd.Index) -> pd.Index:
    return pd.Index(names.astype(str).str.upper())


def _ambiguous(names: pd.Index, keys: pd.Index, among: set[str] | None, name: str) -> None:
    """Refuse two names of one data set equal up to case (only those in ``among``)."""
    dup = keys.duplicated(keep=False)
    if among is not None:
        dup &= keys.isin(among)
    if dup.any():
        first = keys[dup][0]
        clash = list(names[keys == first])
        raise DuplicateNamesError(
            f"{name} has genes that differ only in case ({clash}), so names cannot be matched "
            "up to case: drop or rename one of them, or pass gene_case='exact'"
        )


def case_names(names_sc: pd.Index, names_sp: pd.Index, gene_case: str) -> tuple[pd.Index, pd.Index]:
    """The genes of both data sets renamed for ``gene_case`` (see the module docstring)."""
    check_gene_case(gene_case)
    names_sc, names_sp = pd.Index(names_sc).astype(str), pd.Index(names_sp).astype(str)
    if gene_case == "exact":
        return names_sc, names_sp
    keys_sc, keys_sp = _keys(names_sc), _keys(names_sp)
    if gene_case in ("upper", "lower"):
        for names, keys, name in ((names_sc, keys_sc, "adata_sc"), (names_sp, keys_sp, "adata_sp")):
            _ambiguous(names, keys, None, name)
        if gene_case == "upper":
            return keys_sc, keys_sp
        return pd.Index(names_sc.str.lower()), pd.Index(names_sp.str.lower())
    shared = set(keys_sc) & set(keys_sp)
    _ambiguous(names_sc, keys_sc, shared, "adata_sc")
    _ambiguous(names_sp, keys_sp, shared, "adata_sp")
    spelling = dict(zip(keys_sp, names_sp, strict=True))
    renamed = [spelling[k] if k in shared else n for n, k in zip(names_sc, keys_sc, strict=True)]
    return pd.Index(renamed), names_sp


def _renamed(adata: AnnData, names: pd.Index) -> AnnData:
    """``adata`` with new gene names, its matrices shared (not copied)."""
    if names.equals(adata.var_names):
        return adata
    var = adata.var.copy()
    var.index = names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's notes on views and names
        return AnnData(
            X=adata.X,
            obs=adata.obs,
            var=var,
            layers=dict(adata.layers),
            obsm=dict(adata.obsm),
            uns=adata.uns,
        )


def match_gene_case(
    adata_sc: AnnData, adata_sp: AnnData, gene_case: str = "exact"
) -> tuple[AnnData, AnnData]:
    """Both data sets with their genes named so that ``gene_case`` matches them exactly.

    Parameters
    ----------
    adata_sc, adata_sp
        Reference and spatial data.
    gene_case
        ``"exact"`` (the inputs themselves), ``"insensitive"``, ``"upper"`` or ``"lower"``
        (see the module docstring).

    Returns
    -------
    ``(adata_sc, adata_sp)``: the inputs where nothing is renamed, else new AnnData objects
    sharing the inputs' matrices, ``obs`` and ``obsm`` (write results into the inputs).

    Raises
    ------
    InvalidOptionError
        ``gene_case`` is not one of :data:`GENE_CASES`.
    DuplicateNamesError
        Two genes of one data set are equal up to case.
    """
    if check_gene_case(gene_case) == "exact":
        return adata_sc, adata_sp
    names_sc, names_sp = case_names(adata_sc.var_names, adata_sp.var_names, gene_case)
    return _renamed(adata_sc, names_sc), _renamed(adata_sp, names_sp)


def same_gene(names: pd.Index, genes: pd.Index, gene_case: str = "exact") -> pd.Index:
    """Which of ``names`` are among ``genes``, compared as ``gene_case`` compares them
    (``"exact"``: as written; otherwise up to case). A boolean array."""
    if gene_case == "exact":
        return pd.Index(names).isin(genes)
    return _keys(pd.Index(names)).isin(_keys(pd.Index(genes)))


def case_note(names_sc: pd.Index, names_sp: pd.Index, n_exact: int) -> str | None:
    """With ``gene_case="exact"``: the sentence naming the option when a match up to case
    finds many more shared genes than the ``n_exact`` found, else ``None``."""
    n_any = len(set(_keys(pd.Index(names_sc))) & set(_keys(pd.Index(names_sp))))
    if n_any < max(2 * n_exact, n_exact + CASE_NOTE_MIN_EXTRA) and not (n_exact < 2 <= n_any):
        return None
    return (
        f"adata_sc and adata_sp share {n_exact} gene name(s) as written but {n_any} up to "
        "case: pass gene_case='insensitive' (cellweave map --gene-case insensitive) to match "
        "names that differ only in case"
    )
