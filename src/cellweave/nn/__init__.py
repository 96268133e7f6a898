"""Torch building blocks shared by every cellweave model: MLPs, gated attention fusion and
count likelihoods."""

from __future__ import annotations

from .attention import GatedAttentionFusion
from .layers import MLP, GradientReversal, grad_reverse, take_rows
from .likelihoods import (
    LIKELIHOODS,
    multinomial_log_prob,
    nb_log_prob,
    poisson_log_prob,
    zinb_log_prob,
)

__all__ = [
    "LIKELIHOODS",
    "MLP",
    "GatedAttentionFusion",
    "GradientReversal",
    "grad_reverse",
    "multinomial_log_prob",
    "nb_log_prob",
    "poisson_log_prob",
    "take_rows",
    "zinb_log_prob",
]
