"""Spatial imputation: denoise sparse spatial counts (``cellweave.tl.impute``).

Methods live in one registry (:data:`METHODS`, filled in :mod:`cellweave.impute.registry`):
references (``raw``, ``gene_mean``), baselines (kNN, spatial smoothing, rings, MAGIC-like
diffusion, NMF) and the models (neural matrix factorization and autoencoder with a spatial
loss, the mixture of programs; ``auto``). ``evaluate`` runs the molecular cross-validation
protocol.
"""

from .api import impute, predict_proportions
from .evaluate import evaluate
from .registry import METHODS, get_method

__all__ = ["METHODS", "evaluate", "get_method", "impute", "predict_proportions"]
