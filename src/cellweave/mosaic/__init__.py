"""Mosaic multi-omics integration: one generative model for RNA, ATAC and protein measured in
any subset per batch (see ``docs/mosaic.md``).

* :class:`MosaicModel` - the model (train, latent, labels, imputation, differential, save/load);
* :func:`integrate` - scanpy-style one call writing the results into the MuData/AnnData;
* guidance-graph builders: :func:`gene_peak_links`, :func:`gene_protein_links`,
  :func:`graph_from_links`, :func:`add_guidance`, :func:`read_bed`, :func:`read_gtf`;
* :func:`transport_batches` - move weakly measured batches onto the others in the latent by
  optimal transport (:func:`barycentric_projection`);
* :func:`unintegrated_embedding` - PCA of RNA + LSI of ATAC, the unintegrated reference of
  scib's PCR comparison.
"""

from __future__ import annotations

from .api import integrate
from .config import choose_n_clusters
from .data import MosaicData, UnknownLabelError
from .guidance import (
    CD_ALIASES,
    add_guidance,
    gene_peak_links,
    gene_protein_links,
    graph_from_links,
    peaks_from_names,
    read_bed,
    read_gtf,
)
from .model import MosaicModel
from .transport import barycentric_projection, transport_batches
from .unintegrated import unintegrated_embedding

__all__ = [
    "CD_ALIASES",
    "MosaicData",
    "MosaicModel",
    "UnknownLabelError",
    "add_guidance",
    "barycentric_projection",
    "choose_n_clusters",
    "gene_peak_links",
    "gene_protein_links",
    "graph_from_links",
    "integrate",
    "peaks_from_names",
    "read_bed",
    "read_gtf",
    "transport_batches",
    "unintegrated_embedding",
]
