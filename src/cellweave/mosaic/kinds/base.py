"""What a modality kind is: the words that identify it, its defaults, and its decoder heads.

A :class:`ModalityKind` is one object per kind of measurement (RNA, ATAC, protein,
methylation...). The mosaic data layer and model never branch on a kind's name: they ask its
object for

* the words that identify it in modality names (:meth:`ModalityKind.identifies`);
* its default likelihood, encoder input (:mod:`..represent`) and feature cap, and which
  likelihoods / representations it accepts;
* the extra matrices it holds besides ``X`` (``layers``; e.g. methylation's total coverage);
* its library-size and bias rules and decoder head, through the :class:`Head` of its
  likelihood: parameters, ``log p(x | z)``, expected value, whether the decoder predicts
  absolute counts.

A head is shared by every kind that uses its likelihood (NB serves RNA and protein).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse

from ...registry import Choice, Int, Option

__all__ = ["Head", "ModalityKind"]


class Head:
    """The likelihood part of a modality decoder (subclass one per likelihood).

    A head adds its parameters to a :class:`~..modules.HybridDecoder` (:meth:`init`), scores
    observations (:meth:`log_prob`), gives expected values (:meth:`expected`), and on the
    data side prepares count rows (:meth:`prepare`), library sizes (:meth:`totals`) and the
    decoder's initial bias (:meth:`initial_bias`).
    """

    #: the likelihood's name (``likelihoods={"rna": "zinb"}``)
    name: str = ""
    #: the decoder may predict absolute counts (``exp(logits)``, the kind says whether it does)
    can_be_absolute: bool = False
    #: training may score a random subset of the features (scaled up to all of them)
    subsample: bool = False

    # ------------------------------------------------------------------ model side
    def init(self, dec: Any, n_batches: int, n_features: int) -> None:
        """Add the head's parameters to the decoder ``dec`` (none by default)."""

    def log_prob(
        self,
        dec: Any,
        x: torch.Tensor,
        logits: torch.Tensor,
        library: torch.Tensor,
        batch: int,
        layers: Mapping[str, torch.Tensor],
    ) -> torch.Tensor:
        """``log p(x | z)`` per cell, summed over the given features."""
        raise NotImplementedError

    def expected(
        self, dec: Any, logits: torch.Tensor, library: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        """Expected value per entry."""
        raise NotImplementedError

    def decode_library(self, dec: Any, library: float | None) -> float | None:
        """Library size used when generating (imputation, differential tests)."""
        return library

    # ------------------------------------------------------------------ data side
    def prepare(self, X: sparse.csr_matrix) -> sparse.csr_matrix:
        """The observed rows as the head scores them (e.g. binarized)."""
        return X

    def totals(self, X: sparse.csr_matrix, layers: Mapping[str, Any]) -> np.ndarray:
        """Per-cell library size, float32: total counts by default."""
        return np.asarray(X.sum(axis=1)).ravel().astype(np.float32)

    def initial_bias(
        self, X: sparse.csr_matrix, layers: Mapping[str, Any], *, absolute: bool
    ) -> np.ndarray:
        """Initial feature logits from the observed rows (the log mean profile by default;
        the log mean count for an ``absolute`` decoder)."""
        col = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
        if absolute:
            return np.log((col + 0.5) / X.shape[0])
        prof = (col + 0.5) / (col.sum() + 0.5 * col.size)
        return np.log(prof)

    def check(self, X: Any, layers: Mapping[str, Any], *, where: str) -> None:
        """Refuse observations the likelihood cannot score (nothing beyond counts here)."""


@dataclass(frozen=True)
class ModalityKind:
    """One kind of modality (see the module docstring).

    Attributes
    ----------
    name
        The kind's name (``modality_types={"gex": "rna"}``).
    words
        Lower-case fragments that identify the kind in a modality name.
    description
        One line for ``--list-methods`` and docs.
    likelihood, representation, max_features
        Defaults: count likelihood, encoder input, most variable features kept (``None``: all).
    likelihoods, representations
        What the kind accepts.
    heads
        The heads of ``likelihoods`` (shared objects; a new likelihood's head comes with the
        kind that introduces it).
    absolute
        NB/ZINB decoders of this kind predict absolute counts, not a composition times the
        library (protein: its per-cell total is mostly biological; totalVI).
    layers
        Extra matrices the kind holds besides ``X`` (``adata.layers`` names; e.g.
        methylation's ``"total"`` coverage next to the methylated counts in ``X``).
    """

    name: str
    words: tuple[str, ...]
    description: str
    likelihood: str
    representation: str
    heads: Mapping[str, Head]
    representations: tuple[str, ...]
    max_features: int | None = None
    absolute: bool = False
    layers: tuple[str, ...] = ()

    @property
    def likelihoods(self) -> tuple[str, ...]:
        return tuple(self.heads)

    def identifies(self, name: str) -> bool:
        """Whether the modality name ``name`` names this kind."""
        low = name.lower()
        return any(word in low for word in self.words)

    def head(self, likelihood: str) -> Head:
        """The decoder head of ``likelihood`` (one of :attr:`likelihoods`)."""
        return self.heads[likelihood]

    def absolute_decoder(self, likelihood: str) -> bool:
        """Whether this kind's decoder with ``likelihood`` predicts absolute counts."""
        return self.absolute and self.heads[likelihood].can_be_absolute

    def default(self, key: str) -> Any:
        """Default of a per-modality option (``"likelihood"``, ``"representation"``,
        ``"max_features"``)."""
        return {
            "likelihood": self.likelihood,
            "representation": self.representation,
            "max_features": self.max_features,
        }[key]

    def options(self) -> list[Option]:
        """What a modality of this kind can be configured with (typed, for the registry)."""
        return [
            Choice("likelihood", self.likelihood, self.likelihoods, doc="count likelihood"),
            Choice(
                "representation", self.representation, self.representations, doc="encoder input"
            ),
            Int(
                "max_features",
                self.max_features,
                low=1,
                allow_none=True,
                doc="most variable features kept (None: all)",
            ),
        ]
