"""Which feature of section a is compared with which feature of section b (two modalities).

``align_sections(feature_pairs=...)`` accepts

- ``"auto"``: the pairs are built from the two sections' feature names with
  :func:`cellweave.links.gene_protein_links` (gene symbols on one side, antibody names such as
  ``CD3-TotalSeqB``, ``ADT_CD4`` or ``CD8a_ACCCGCAC`` on the other); the RNA section is the one
  whose names match genes;
- a table: a path to a CSV/TSV file, or a two-column DataFrame, one pair per row (feature of
  a, feature of b; a header row and the columns in the other order are recognised);
- a mapping or Series ``{feature of a: feature of b}``.

:func:`resolve_pairs` checks them against both sections before any work: no pair found, a
name absent from a section, a pair listed twice or an unreadable table is one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import (
    DuplicateNamesError,
    FileFormatError,
    InvalidOptionError,
    MissingKeyError,
    NoSharedFeaturesError,
)
from ..links import gene_protein_links

__all__ = ["AUTO", "MIN_PAIRS", "FeaturePairs", "read_pairs", "resolve_pairs"]

AUTO = "auto"
MIN_PAIRS = 5  # pairs needed to compare two modalities (as many as shared genes)
_SHOWN = 3  # names shown in a message


@dataclass(frozen=True)
class FeaturePairs:
    """The resolved pairs: ``a[i]`` (a feature of section a) is compared with ``b[i]``.

    Attributes
    ----------
    a, b
        Paired feature names of section a and section b (a name may occur in several pairs).
    source
        ``"auto"`` (name matching), ``"table"`` (a file or DataFrame) or ``"mapping"``.
    rna
        With ``"auto"``: which section holds the genes (``"a"`` or ``"b"``), else ``None``.
    """

    a: tuple[str, ...]
    b: tuple[str, ...]
    source: str
    rna: str | None = None

    def series(self) -> pd.Series:
        """The pairs as a Series indexed by the features of a (the form ``feature_cost`` reads)."""
        return pd.Series(list(self.b), index=pd.Index(list(self.a)), dtype=object)

    def arrays(self) -> dict[str, np.ndarray]:
        """``{"a": names, "b": names}`` as string arrays (h5ad-safe), for ``uns``."""
        return {"a": np.asarray(self.a, dtype=str), "b": np.asarray(self.b, dtype=str)}

    def describe(self) -> dict[str, Any]:
        """What goes into ``uns[key]["params"]``: where the pairs came from and how many."""
        return {
            "feature_pairs": self.source,
            "n_feature_pairs": len(self.a),
            "rna_section": self.rna if self.rna is not None else "unknown",
        }


def read_pairs(path: str | Path) -> pd.DataFrame:
    """A two-column table of feature pairs from a CSV/TSV file (strings, no header parsing).

    Raises
    ------
    FileFormatError
        The file is missing, unreadable, empty, or has other than two columns or empty cells.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(
            f"feature pairs table {path} does not exist: pass a CSV/TSV file with two columns "
            "(feature of A, feature of B) or 'auto'"
        )
    sep = {".tsv": "\t", ".tab": "\t", ".csv": ","}.get(path.suffix.lower())
    try:
        table = pd.read_csv(
            path, sep=sep, header=None, dtype=str, engine="python", skip_blank_lines=True
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise FileFormatError(
            f"could not read feature pairs table {path} ({reason}): write two columns, "
            "feature of A and feature of B, comma- or tab-separated"
        ) from None
    table = table.dropna(axis=1, how="all")
    if table.shape[1] != 2 or len(table) == 0:
        raise FileFormatError(
            f"feature pairs table {path} has {table.shape[1]} column(s) and {len(table)} row(s): "
            "write two columns, feature of A and feature of B, one pair per row"
        )
    if table.isna().any(axis=None):
        row = int(np.flatnonzero(table.isna().any(axis=1).to_numpy())[0]) + 1
        raise FileFormatError(
            f"feature pairs table {path} has an empty cell in row {row}: every row needs a "
            "feature of A and a feature of B"
        )
    return table


def resolve_pairs(
    feature_pairs: Any, names_a: Sequence[str], names_b: Sequence[str]
) -> FeaturePairs | None:
    """Check ``feature_pairs`` against both sections' feature names and return the pairs.

    Raises
    ------
    NoSharedFeaturesError
        Fewer than :data:`MIN_PAIRS` pairs (``"auto"``: the names matched no gene-protein pair).
    MissingKeyError
        A table or mapping names a feature absent from its section.
    DuplicateNamesError
        A pair is listed twice.
    FileFormatError
        A table file that cannot be read as two columns.
    InvalidOptionError
        ``feature_pairs`` of another type.
    """
    if feature_pairs is None:
        return None
    index_a = pd.Index(list(map(str, names_a)))
    index_b = pd.Index(list(map(str, names_b)))
    if isinstance(feature_pairs, str) and feature_pairs.strip().lower() == AUTO:
        return auto_pairs(index_a, index_b)
    if isinstance(feature_pairs, str | Path):
        table = read_pairs(feature_pairs)
        return _from_table(table, index_a, index_b, source="table")
    if isinstance(feature_pairs, pd.DataFrame):
        if feature_pairs.shape[1] != 2:
            raise InvalidOptionError(
                f"feature_pairs has {feature_pairs.shape[1]} columns: give two (feature of "
                "adata_a, feature of adata_b)"
            )
        table = feature_pairs.astype(str)
        return _from_table(table, index_a, index_b, source="table", header=False)
    if isinstance(feature_pairs, Mapping | pd.Series):
        series = pd.Series(feature_pairs) if isinstance(feature_pairs, Mapping) else feature_pairs
        table = pd.DataFrame({0: series.index.astype(str), 1: series.astype(str).to_numpy()})
        return _checked(table, index_a, index_b, source="mapping")
    raise InvalidOptionError(
        f"feature_pairs={feature_pairs!r} is not understood: pass 'auto', a CSV/TSV path, a "
        "two-column DataFrame, or a mapping {feature of adata_a: feature of adata_b}"
    )


def auto_pairs(names_a: pd.Index, names_b: pd.Index) -> FeaturePairs:
    """Gene-protein pairs by name (:func:`~cellweave.links.gene_protein_links`) in whichever
    direction matches more names (ties: the section with more features holds the genes)."""
    forward = gene_protein_links(names_a, names_b)  # genes in a
    backward = gene_protein_links(names_b, names_a)  # genes in b
    rna_a = len(forward) > len(backward) or (
        len(forward) == len(backward) and len(names_a) >= len(names_b)
    )
    links = forward if rna_a else backward
    if len(links) == 0:
        raise NoSharedFeaturesError(
            "feature_pairs='auto' found no gene-protein pair between the sections' feature "
            f"names (A: {_examples(names_a)}; B: {_examples(names_b)}): pass a table of pairs "
            "(CSV, two columns: feature of A, feature of B), or structure_only=True"
        )
    genes, proteins = links["source"].astype(str), links["target"].astype(str)
    a, b = (genes, proteins) if rna_a else (proteins, genes)
    pairs = FeaturePairs(tuple(a), tuple(b), AUTO, "a" if rna_a else "b")
    if len(pairs.a) < MIN_PAIRS:
        shown = ", ".join(f"{x}-{y}" for x, y in zip(pairs.a, pairs.b, strict=True))
        raise NoSharedFeaturesError(
            f"feature_pairs='auto' found only {len(pairs.a)} gene-protein pair(s) ({shown}), "
            f"at least {MIN_PAIRS} are needed: pass a table of pairs (CSV, two columns: feature "
            "of A, feature of B), or structure_only=True"
        )
    return pairs


def _examples(names: pd.Index) -> str:
    shown = ", ".join(map(repr, names[:_SHOWN]))
    return f"{shown}{', ...' if len(names) > _SHOWN else ''}"


def _from_table(
    table: pd.DataFrame, names_a: pd.Index, names_b: pd.Index, *, source: str, header=True
) -> FeaturePairs:
    """Pairs of a two-column table: a first row naming no feature is a header; the columns
    may come in either order (the order naming more features of a then b is kept)."""
    table = pd.DataFrame(table.to_numpy(dtype=str)).apply(lambda col: col.str.strip())
    first, second = table[0], table[1]
    forward = int((first.isin(names_a) & second.isin(names_b)).sum())
    backward = int((first.isin(names_b) & second.isin(names_a)).sum())
    if backward > forward:
        table = table[[1, 0]].set_axis([0, 1], axis=1)
    row = table.iloc[0]
    known = row[0] in names_a or row[1] in names_b
    if header and len(table) > 1 and not known:
        table = table.iloc[1:].reset_index(drop=True)
    return _checked(table, names_a, names_b, source=source)


def _checked(
    table: pd.DataFrame, names_a: pd.Index, names_b: pd.Index, *, source: str
) -> FeaturePairs:
    """Refuse names absent from their section, repeated pairs and too few pairs."""
    a, b = table[0].astype(str).to_numpy(), table[1].astype(str).to_numpy()
    for names, index, side in ((a, names_a, "A (adata_a)"), (b, names_b, "B (adata_b)")):
        absent = pd.unique(names[~pd.Index(names).isin(index)])
        if len(absent):
            raise MissingKeyError(
                f"feature_pairs names {len(absent)} feature(s) absent from section {side} "
                f"(e.g. {', '.join(map(repr, absent[:_SHOWN]))}; it has {_examples(index)}): "
                "list features of A in the first column and of B in the second, or drop those"
            )
    repeated = pd.DataFrame({"a": a, "b": b}).duplicated()
    if repeated.any():
        i = int(np.flatnonzero(repeated.to_numpy())[0])
        raise DuplicateNamesError(
            f"feature_pairs lists the pair ({a[i]!r}, {b[i]!r}) more than once: list each pair once"
        )
    if len(a) < MIN_PAIRS:
        raise NoSharedFeaturesError(
            f"feature_pairs has {len(a)} pair(s), but at least {MIN_PAIRS} are needed: pair "
            "more features of adata_a with adata_b's, or pass structure_only=True"
        )
    return FeaturePairs(tuple(map(str, a)), tuple(map(str, b)), source)
