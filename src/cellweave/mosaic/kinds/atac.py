"""ATAC: binarized accessibility (Bernoulli with a depth offset), LSI input, all peaks."""

from __future__ import annotations

from . import register_kind
from .base import ModalityKind
from .heads import COUNT_HEADS, COUNT_REPRESENTATIONS

ATAC = register_kind(
    ModalityKind(
        name="atac",
        words=("atac", "peak", "chrom", "access"),
        description="chromatin accessibility (Bernoulli; LSI input; all peaks)",
        likelihood="bernoulli",
        representation="lsi",
        heads=COUNT_HEADS,
        representations=COUNT_REPRESENTATIONS,
    )
)
