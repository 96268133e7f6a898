"""Map scRNA-seq cells onto spatial data (``cellweave.tl.map_cells``).

From a mapping (:class:`Mapping`, a sparse cells x spots plan): predicted expression of any
reference gene at every spot (:func:`project_genes`), cell-type fractions per spot and the
most likely location of every cell (:func:`cell_type_fractions`). Methods: the entries of
:data:`METHODS` (``cellweave map --list-methods``; see :mod:`cellweave.mapping.api`).
"""

from .api import (
    DEFAULT_METHOD,
    FRACTIONS_FALLBACK,
    FRACTIONS_METHOD,
    METHODS,
    cell_type_fractions,
    get_method,
    map_cells,
    predict_genes,
    project_genes,
)
from .features import prepare_features, shared_genes
from .gene_case import GENE_CASES, match_gene_case
from .result import Mapping, output_keys

if __doc__:  # the default and the solvers named from the registry (no drift)
    __doc__ += (
        f'\nThe default (``method="auto"``) is ``{DEFAULT_METHOD!r}``, and with a '
        f"``cell_type_key`` (cell-type fractions) ``{FRACTIONS_METHOD!r}`` on raw counts, "
        f"``{FRACTIONS_FALLBACK!r}`` on other values; the solvers are "
        + ", ".join(f"``{name!r}``" for name in METHODS.names("solver"))
        + ".\n"
    )

__all__ = [
    "DEFAULT_METHOD",
    "FRACTIONS_FALLBACK",
    "FRACTIONS_METHOD",
    "GENE_CASES",
    "METHODS",
    "Mapping",
    "cell_type_fractions",
    "get_method",
    "map_cells",
    "match_gene_case",
    "output_keys",
    "predict_genes",
    "prepare_features",
    "project_genes",
    "shared_genes",
]
