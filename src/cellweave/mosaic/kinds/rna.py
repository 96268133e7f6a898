"""RNA: negative-binomial counts, PCA of log-normalized expression, the 4000 most variable
genes (scVI/MultiVI practice)."""

from __future__ import annotations

from . import register_kind
from .base import ModalityKind
from .heads import COUNT_HEADS, COUNT_REPRESENTATIONS

RNA = register_kind(
    ModalityKind(
        name="rna",
        words=("rna", "gex", "gene", "expression", "mrna"),
        description="gene expression counts (NB; PCA input; 4000 most variable genes)",
        likelihood="nb",
        representation="pca",
        max_features=4000,
        heads=COUNT_HEADS,
        representations=COUNT_REPRESENTATIONS,
    )
)
