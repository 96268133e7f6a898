"""Spatial imputation: denoise sparse spatial counts (``cellweave.tl.impute``).

Methods live in one registry (:data:`METHODS`, filled in :mod:`cellweave.impute.registry`):
references (``raw``, ``gene_mean``), baselines (kNN, spatial smoothing, rings, MAGIC-like
diffusion, NMF) and the models (neural matrix factorization and autoencoder with a spatial
loss, the mixture of programs; ``auto``). ``evaluate`` runs the molecular cross-validation
protocol. ``impute_backed`` streams ``mf`` from a backed file (:mod:`.backed`).
"""

from .api import impute, predict_proportions
from .backed import STREAMING_METHODS, impute_backed
from .evaluate import evaluate
from .registry import METHODS, get_method

__all__ = [
    "METHODS",
    "STREAMING_METHODS",
    "evaluate",
    "get_method",
    "impute",
    "impute_backed",
    "predict_proportions",
]
