"""Protein (ADT): negative-binomial counts decoded as absolute counts (each cell's total is
mostly biology, totalVI), CLR input, all proteins."""

from __future__ import annotations

from . import register_kind
from .base import ModalityKind
from .heads import COUNT_HEADS, COUNT_REPRESENTATIONS

PROTEIN = register_kind(
    ModalityKind(
        name="protein",
        words=("prot", "adt", "antibod", "cite"),
        description="surface protein counts (NB, absolute scale; CLR input; all proteins)",
        likelihood="nb",
        representation="clr",
        heads=COUNT_HEADS,
        representations=COUNT_REPRESENTATIONS,
        absolute=True,
    )
)
