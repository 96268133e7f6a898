"""DNA methylation: methylated and total (covered) read counts per region, a binomial or
beta-binomial likelihood of the methylated reads given the coverage, and PCA of shrunken
methylation-rate residuals as the encoder input.

A methylation modality holds the methylated counts in ``X`` and the coverage in
``layers["total"]`` (``0 <= X <= total``; regions a cell did not cover have ``total = 0`` and
add nothing to the likelihood). The decoder gives each region's methylation rate
``p = sigmoid(logits)``; the beta-binomial head adds a per-batch, per-region concentration
``c`` (``alpha = p c``, ``beta = (1 - p) c``; MethylVI's over-dispersion). Expected values are
rates, whatever the coverage.

The encoder input (``"rate_pca"``): per region the pooled rate ``r_f`` (fitted), per entry the
residual ``(m - n r_f) / (n + 1)`` (a rate shrunk towards ``r_f`` by one pseudo-read, zero
where not covered), centred and projected on its top principal axes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from ...errors import InputError
from ...nn import take_rows
from ...validate import check_counts
from ..represent import Transform, centred_svd, register_representation
from . import register_kind
from .base import Head, ModalityKind

__all__ = ["METHYLATION", "BetaBinomialHead", "BinomialHead", "RatePCA"]

_TOTAL = "total"
_PSEUDO_READS = 1.0


def _lchoose(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


class BinomialHead(Head):
    """Binomial methylated reads given the coverage, rate ``sigmoid(logits)``."""

    name = "binomial"

    def log_prob(self, dec, x, logits, library, batch, layers):
        n = layers[_TOTAL]
        value = _lchoose(n, x) + x * F.logsigmoid(logits) + (n - x) * F.logsigmoid(-logits)
        return value.sum(1)

    def expected(self, dec, logits, library, batch):
        return torch.sigmoid(logits)

    def totals(self, X: sparse.csr_matrix, layers: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(layers[_TOTAL].sum(axis=1)).ravel().astype(np.float32)

    def initial_bias(self, X, layers, *, absolute):
        m = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
        n = np.asarray(layers[_TOTAL].sum(axis=0)).ravel().astype(np.float64)
        rate = np.clip((m + 0.5) / (n + 1.0), 1e-6, 1 - 1e-6)
        return np.log(rate / (1 - rate))

    def check(self, X: Any, layers: Mapping[str, Any], *, where: str) -> None:
        total = layers[_TOTAL]
        check_counts(total, name=where.replace(".X", f".layers[{_TOTAL!r}]"))
        excess = sparse.csr_matrix(X) - sparse.csr_matrix(total)
        if excess.nnz and float(excess.max()) > 0:
            raise InputError(
                f"{where} holds more methylated reads than layers[{_TOTAL!r}] covers in "
                f"{int((excess > 0).sum())} entries: X must be the methylated counts and "
                f"layers[{_TOTAL!r}] the total coverage (X <= total)"
            )


class BetaBinomialHead(BinomialHead):
    """Beta-binomial: the binomial rate drawn from ``Beta(p c, (1 - p) c)`` per entry, with a
    per-batch, per-region concentration ``c = exp(log_concentration)``."""

    name = "betabinomial"

    def init(self, dec: Any, n_batches: int, n_features: int) -> None:
        dec.log_concentration = nn.Parameter(torch.full((n_batches, n_features), math.log(10.0)))

    def log_prob(self, dec, x, logits, library, batch, layers):
        n = layers[_TOTAL]
        c = torch.exp(take_rows(dec.log_concentration, batch))
        a = (torch.sigmoid(logits) * c).clamp_min(1e-8)
        b = (torch.sigmoid(-logits) * c).clamp_min(1e-8)
        value = (
            _lchoose(n, x)
            + torch.lgamma(x + a)
            + torch.lgamma(n - x + b)
            - torch.lgamma(n + a + b)
            - torch.lgamma(a)
            - torch.lgamma(b)
            + torch.lgamma(a + b)
        )
        return value.sum(1)


def _residuals(X: sparse.csr_matrix, N: sparse.csr_matrix, rate: np.ndarray) -> sparse.csr_matrix:
    """``(m - n r) / (n + pseudo)`` on the covered entries (zero elsewhere)."""
    N = sparse.csr_matrix(N, dtype=np.float32)
    X = sparse.csr_matrix(X, dtype=np.float32)
    shrink = N.copy()
    shrink.data = 1.0 / (shrink.data + _PSEUDO_READS)
    diff = X - N @ sparse.diags(rate.astype(np.float32))
    return sparse.csr_matrix(diff.multiply(shrink), dtype=np.float32)


class RatePCA(Transform):
    """PCA of shrunken methylation-rate residuals (see the module docstring)."""

    layers = (_TOTAL,)

    def fit(self, X, n_comps, seed, layers):
        N = _total(layers)
        m = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
        n = np.asarray(N.sum(axis=0)).ravel().astype(np.float64)
        rate = ((m + 0.5) / (n + 1.0)).astype(np.float32)
        R = _residuals(X, N, rate)
        mean = np.asarray(R.mean(axis=0)).ravel().astype(np.float32)
        k = max(1, min(n_comps, R.shape[0] - 1, R.shape[1] - 1))
        comps = centred_svd(R, k, seed, mean)
        proj = np.asarray(R @ comps.T) - mean @ comps.T
        scale = np.float32(max(float(np.sqrt((proj**2).mean())), 1e-8))
        return {"rate": rate, "mean": mean, "components": comps, "std": np.full(k, scale)}

    def transform(self, arrays, X, layers):
        a = arrays
        R = _residuals(X, _total(layers), a["rate"])
        proj = np.asarray(R @ a["components"].T) - a["mean"] @ a["components"].T
        return (proj / a["std"]).astype(np.float32)

    def n_dims(self, arrays, n_features):
        return int(arrays["components"].shape[0])


def _total(layers: Mapping[str, Any] | None) -> sparse.csr_matrix:
    if not layers or _TOTAL not in layers:
        raise InputError(
            f"the 'rate_pca' representation needs the coverage layers[{_TOTAL!r}] next to the "
            "methylated counts: pass layers={'total': coverage rows}"
        )
    return sparse.csr_matrix(layers[_TOTAL])


register_representation("rate_pca", RatePCA())
_HEADS = {h.name: h for h in (BetaBinomialHead(), BinomialHead())}

METHYLATION = register_kind(
    ModalityKind(
        name="methylation",
        words=("methyl", "mcg", "5mc", "bisulf"),
        description=(
            "DNA methylation: methylated reads in X, coverage in layers['total'] "
            "(beta-binomial; PCA of rate residuals)"
        ),
        likelihood="betabinomial",
        representation="rate_pca",
        heads=_HEADS,
        representations=("rate_pca",),
        layers=(_TOTAL,),
    )
)
