"""Multi-omics mosaic simulator with ground truth.

Cells carry a discrete cell type and a continuous state (a short trajectory inside each type)
in a latent space. RNA, ATAC and protein are generated from that latent through feature
loadings tied together by known links (gene-peak with a sign, gene-protein), with per-batch
feature shifts and library scales; each batch measures any subset of the modalities. The
layout mirrors ``mop_mosaic_rna_atac.h5mu``: one MuData whose modalities hold only their
measured cells, ``obs["batch"]``, presence masks ``obsm[mod]`` and a gene-peak prior in
``varp["gene_peak"]``. Every ground-truth key is described in ``docs/simulator_mosaic.md``.
"""

from .batches import DEFAULT_BATCHES, MODALITIES
from .simulate import simulate_mosaic

__all__ = ["DEFAULT_BATCHES", "MODALITIES", "simulate_mosaic"]
