"""Decoder heads of the count likelihoods shared by RNA, ATAC and protein: negative
binomial, zero-inflated negative binomial, Bernoulli (see :class:`.base.Head`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from ...nn import nb_log_prob, take_rows, zinb_log_prob
from .base import Head

__all__ = ["COUNT_HEADS", "COUNT_REPRESENTATIONS", "BernoulliHead", "NBHead", "ZINBHead"]

#: the encoder inputs every count kind accepts
COUNT_REPRESENTATIONS = ("lognorm", "pca", "lsi", "clr", "binary")


class NBHead(Head):
    """Negative binomial with mean ``library * softmax(logits)`` (``exp(logits)`` for an
    absolute decoder) and a per-batch, per-feature inverse dispersion."""

    name = "nb"
    can_be_absolute = True

    def init(self, dec: Any, n_batches: int, n_features: int) -> None:
        dec.log_theta = nn.Parameter(torch.full((n_batches, n_features), math.log(10.0)))

    def _mu_theta(self, dec, logits, library, batch):
        mu = dec.mean(logits, None if dec.absolute else library)
        return mu, torch.exp(take_rows(dec.log_theta, batch))

    def log_prob(self, dec, x, logits, library, batch, layers):
        mu, theta = self._mu_theta(dec, logits, library, batch)
        return nb_log_prob(x, mu, theta).sum(1)

    def expected(self, dec, logits, library, batch):
        return dec.mean(logits, library)


class ZINBHead(NBHead):
    """Zero-inflated NB: the NB head with per-batch, per-feature dropout logits."""

    name = "zinb"

    def init(self, dec: Any, n_batches: int, n_features: int) -> None:
        super().init(dec, n_batches, n_features)
        dec.dropout_logits = nn.Parameter(torch.full((n_batches, n_features), -3.0))

    def log_prob(self, dec, x, logits, library, batch, layers):
        mu, theta = self._mu_theta(dec, logits, library, batch)
        return zinb_log_prob(x, mu, theta, take_rows(dec.dropout_logits, batch)).sum(1)

    def expected(self, dec, logits, library, batch):
        return dec.mean(logits, library) * torch.sigmoid(-take_rows(dec.dropout_logits, batch))


class BernoulliHead(Head):
    """Bernoulli on binarized counts with probability ``sigmoid(logits + log(library /
    mean library))``; the library is the number of open features."""

    name = "bernoulli"
    subsample = True

    def _offset(self, dec, library: torch.Tensor) -> torch.Tensor:
        return torch.log(library.clamp_min(1.0)) - dec.log_mean_library

    def log_prob(self, dec, x, logits, library, batch, layers):
        offset = self._offset(dec, library)
        return -F.binary_cross_entropy_with_logits(
            logits + offset.unsqueeze(1), x, reduction="none"
        ).sum(1)

    def expected(self, dec, logits, library, batch):
        return torch.sigmoid(logits + self._offset(dec, library).unsqueeze(1))

    def decode_library(self, dec: Any, library: float | None) -> float | None:
        return float(torch.exp(dec.log_mean_library))  # the mean depth

    def prepare(self, X: sparse.csr_matrix) -> sparse.csr_matrix:
        X = sparse.csr_matrix(X, dtype=np.float32, copy=True)
        X.data = (X.data > 0).astype(np.float32)
        X.eliminate_zeros()
        return X

    def totals(self, X: sparse.csr_matrix, layers: Mapping[str, Any]) -> np.ndarray:
        return np.diff(sparse.csr_matrix(X).indptr).astype(np.float32)

    def initial_bias(self, X, layers, *, absolute):
        col = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
        frac = np.clip((col + 0.5) / (X.shape[0] + 1.0), 1e-6, 1 - 1e-6)
        return np.log(frac / (1 - frac))


#: the heads every count kind (RNA, ATAC, protein) accepts
COUNT_HEADS: dict[str, Head] = {h.name: h for h in (NBHead(), ZINBHead(), BernoulliHead())}
