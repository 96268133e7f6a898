"""Tools (``cellweave.tl``): the capabilities, scanpy style (data object first)."""

from .align import align_sections, transfer_features
from .impute import impute
from .mapping import cell_type_fractions, map_cells, project_genes
from .mosaic.api import integrate, map_query
from .mosaic.transport import transport_batches

__all__ = [
    "align_sections",
    "cell_type_fractions",
    "impute",
    "integrate",
    "map_cells",
    "map_query",
    "project_genes",
    "transfer_features",
    "transport_batches",
]
