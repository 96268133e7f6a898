"""Feature links across modalities by name: which protein (antibody) measures which gene.

Core module shared by the capabilities: the mosaic model's guidance graph
(:mod:`cellweave.mosaic.guidance`) and the RNA-vs-protein section alignment
(``cellweave.align``, ``feature_pairs="auto"``) both build their links here.

* :func:`gene_protein_links` - a protein and a gene are linked when their names match after
  removing barcodes and prefixes (``prot_``, ``ADT_``, ``_TotalSeqB``...), directly or through
  :data:`CD_ALIASES` (``CD3 -> CD3E``, ``CD45RA -> PTPRC``...) or a user mapping.
* :func:`clean_protein_name` - the name a protein is matched by.
* :func:`empty_links` - the links table with no row (columns :data:`LINK_COLUMNS`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pandas as pd

__all__ = ["CD_ALIASES", "LINK_COLUMNS", "clean_protein_name", "empty_links", "gene_protein_links"]

#: Common antibody (CD) names -> the gene that encodes the protein (HGNC symbols).
CD_ALIASES: dict[str, str] = {
    "CD3": "CD3E", "CD8": "CD8A", "CD8A": "CD8A", "CD11B": "ITGAM", "CD11C": "ITGAX",
    "CD16": "FCGR3A", "CD25": "IL2RA", "CD45": "PTPRC", "CD45RA": "PTPRC", "CD45RO": "PTPRC",
    "CD56": "NCAM1", "CD57": "B3GAT1", "CD66B": "CEACAM8", "CD73": "NT5E", "CD127": "IL7R",
    "CD134": "TNFRSF4", "CD137": "TNFRSF9", "CD152": "CTLA4", "CD154": "CD40LG",
    "CD155": "PVR", "CD158E1": "KIR3DL1", "CD197": "CCR7", "CD20": "MS4A1", "CD223": "LAG3",
    "CD272": "BTLA", "CD273": "PDCD1LG2", "CD274": "CD274", "CD278": "ICOS", "CD279": "PDCD1",
    "CD335": "NCR1", "CD357": "TNFRSF18", "CD62L": "SELL", "CD34": "CD34", "CD10": "MME",
    "CD21": "CR2", "CD235A": "GYPA", "CD141": "THBD", "CD303": "CLEC4C", "CD123": "IL3RA",
    "CD161": "KLRB1", "CD194": "CCR4", "CD196": "CCR6", "CD183": "CXCR3", "CD185": "CXCR5",
    "HLA-DR": "HLA-DRA", "TCRAB": "TRAC", "IGD": "IGHD", "IGM": "IGHM",
}  # fmt: skip

#: Columns of a links table: one row per link.
LINK_COLUMNS = ("source", "target", "weight", "sign")


def empty_links() -> pd.DataFrame:
    """A links table without rows (``source, target, weight, sign``)."""
    return pd.DataFrame(
        {c: pd.Series(dtype=float if c == "weight" else object) for c in LINK_COLUMNS}
    )


def clean_protein_name(name: str) -> str:
    """The upper-case name a protein is matched by: prefixes (``prot_``, ``ADT_``...), suffixes
    (``-TotalSeqB``, ``_ADT``...) and antibody barcodes (``_ACGTACGT``) removed."""
    name = re.sub(r"^(prot|adt|protein|ab)[_\-.:]", "", str(name), flags=re.I)
    name = re.sub(r"[_\-.](totalseq\w*|adt|prot)$", "", name, flags=re.I)
    name = re.sub(r"_[ACGTN]{6,}$", "", name)  # antibody barcode suffix
    return name.upper()


def gene_protein_links(
    genes: Sequence[str],
    proteins: Sequence[str],
    *,
    mapping: Mapping[str, str] | None = None,
    use_aliases: bool = True,
) -> pd.DataFrame:
    """Gene–protein links by name matching.

    Parameters
    ----------
    genes, proteins
        Feature names of the RNA and protein modalities.
    mapping
        Protein name -> gene name, checked first (overrides the rules below).
    use_aliases
        Use :data:`CD_ALIASES` for antibody names that are not gene symbols.

    Returns
    -------
    Links table (weight 1, sign +1), one row per protein that matched a gene.
    """
    genes = pd.Index(list(map(str, genes)))
    upper = pd.Series(genes, index=genes.str.upper())
    upper = upper[~upper.index.duplicated()]
    rows = []
    for prot in map(str, proteins):
        if mapping and prot in mapping:
            target = str(mapping[prot])
            if target in genes:
                rows.append((target, prot))
            continue
        key = clean_protein_name(prot)
        candidates = [key, key.replace("-", "")]
        if use_aliases and key in CD_ALIASES:
            candidates.insert(0, CD_ALIASES[key])
        for cand in candidates:
            if cand in upper.index:
                rows.append((upper[cand], prot))
                break
    if not rows:
        return empty_links()
    out = pd.DataFrame(rows, columns=["source", "target"])
    out["weight"], out["sign"] = 1.0, 1
    return out
