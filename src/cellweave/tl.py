"""Tools (``cellweave.tl``): the capabilities, scanpy style (data object first)."""

from .impute import impute
from .mapping import cell_type_fractions, map_cells, project_genes
from .mapping.align import align_sections
from .mosaic.api import integrate
from .mosaic.transport import transport_batches

__all__ = [
    "align_sections",
    "cell_type_fractions",
    "impute",
    "integrate",
    "map_cells",
    "project_genes",
    "transport_batches",
]
