"""Autoencoder with a spatial loss and a stopping rule from the training counts alone.

Encoder: a spot's log-normalized expression -> MLP -> latent ``z`` (dimension ``n_latent``);
decoder: ``logits = b + z W^T`` (``b`` initialised at the log pooled gene profile), proportions
their softmax over genes. Fitted with a count likelihood plus ``spatial_weight / 2`` times the
spatial loss of :mod:`.spatial_loss` on the latents (``space="latent"``) or on the centred
log proportions summed over genes (``space="genes"``, through the Gram matrix of the linear
decoder).

An autoencoder trained for a fixed number of steps overfits, so training stops by an inner
molecular split: the model is trained on ``X1a`` and early-stopped on the Poisson deviance of
``X1b`` (see :mod:`.selection`); the best weights are then applied to all of ``X1`` as input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from scipy import sparse
from torch import nn

from .._docs import doc_params
from ..nn import MLP
from ..pp import log_normalize
from ..train import fit
from .models import (
    CountData,
    ProportionModule,
    doc_likelihood,
    doc_runner_inputs,
    gene_log_profile,
)
from .selection import inner_split
from .spatial_loss import SpatialLoss, build_spatial_loss, spatial_penalty

__all__ = ["AEModule", "ae", "ae_predict"]

Space = Literal["genes", "latent"]


class AEModule(ProportionModule):
    """Encoder MLP + linear decoder to gene logits (see the module docstring).

    ``inputs`` are the log-normalized counts the encoder sees (the training counts during
    fitting; they can be swapped for prediction with :meth:`set_inputs`).
    """

    def __init__(
        self,
        data: CountData,
        inputs: sparse.csr_matrix,
        *,
        n_latent: int,
        hidden: Sequence[int],
        dropout: float,
        spatial: SpatialLoss | None,
        spatial_weight: float,
        space: Space,
        bias: np.ndarray,
        likelihood: str,
        val_data: CountData | None,
        lr: float,
    ) -> None:
        super().__init__(data, likelihood=likelihood, val_data=val_data, lr=lr)
        g = data.shape[1]
        self.encoder = MLP(g, hidden, n_latent, norm="layer", dropout=dropout)
        self.decoder = nn.Linear(n_latent, g)
        with torch.no_grad():
            self.decoder.weight.mul_(0.1)
            self.decoder.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        self.spatial = spatial if spatial_weight > 0 else None
        self.spatial_weight = float(spatial_weight)
        self.space = space
        self.set_inputs(inputs)

    def set_inputs(self, counts: sparse.csr_matrix) -> None:
        """Use ``counts`` (log-normalized here) as the encoder's input."""
        self.inputs = CountData(sparse.csr_matrix(log_normalize(counts), dtype=np.float64))
        self.inputs.to(self.device)

    def move_data(self, device: torch.device) -> None:
        super().move_data(device)
        self.inputs.to(device)

    def encode(self, index: torch.Tensor | None) -> torch.Tensor:
        return self.encoder(self.inputs.rows(index))

    def logits(self, index: torch.Tensor | None) -> torch.Tensor:
        return self.decoder(self.encode(index))

    def spot_penalty(self, index: torch.Tensor | None) -> torch.Tensor:
        if self.spatial is None:
            return torch.zeros((), device=self.device)
        src, dst, w = self.spatial.edges(index)
        if src.numel() == 0:
            return torch.zeros((), device=self.device)
        # latents of the batch's spots and of their neighbours, encoded once each
        context, inverse = torch.unique(torch.cat([src, dst]), return_inverse=True)
        z = self.encode(context)
        gram = None
        if self.space == "genes":
            Wc = self.decoder.weight - self.decoder.weight.mean(0)
            gram = Wc.T @ Wc
        src_pos, dst_pos = inverse[: src.numel()], inverse[src.numel() :]
        return (
            0.5
            * self.spatial_weight
            * spatial_penalty(z.index_select(0, src_pos), z.index_select(0, dst_pos), w, gram=gram)
        )


def ae_predict(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    n_latent: int = 16,
    hidden: Sequence[int] = (128,),
    dropout: float = 0.1,
    spatial_weight: float = 0.01,
    space: Space = "latent",
    weights: Sequence[float] = (1.0, 0.5),
    similarity: str | None = None,
    similarity_features: np.ndarray | None = None,
    n_neighbors: int = 6,
    likelihood: str = "poisson",
    max_epochs: int = 100,
    patience: int = 5,
    lr: float = 3e-3,
    batch_size: int | None = None,
    device: str = "auto",
    method: str = "ae",
) -> np.ndarray:
    """Proportions from the spatial autoencoder (see :func:`ae`)."""
    spatial = build_spatial_loss(
        X1,
        coords,
        spatial_weight=spatial_weight,
        weights=weights,
        similarity=similarity,
        similarity_features=similarity_features,
        n_neighbors=n_neighbors,
        random_state=random_state,
        method=method,
    )
    X1a, X1b = inner_split(X1, random_state=random_state)
    torch.manual_seed(int(random_state))
    module = AEModule(
        CountData(X1a),
        X1a,
        n_latent=int(n_latent),
        hidden=tuple(hidden),
        dropout=float(dropout),
        spatial=spatial,
        spatial_weight=float(spatial_weight) * max(float(X1a.sum()) / X1.shape[0], 1.0),
        space=space,
        bias=gene_log_profile(X1a),
        likelihood=likelihood,
        val_data=CountData(X1b),
        lr=lr,
    )
    batch = batch_size if batch_size is not None and batch_size < X1.shape[0] else None
    fit(
        module,
        n_train=X1.shape[0],
        n_val=X1.shape[0],
        batch_size=batch,
        val_batch_size=batch,
        steps_per_epoch=10 if batch is None else None,
        max_epochs=int(max_epochs),
        patience=int(patience),
        device=device,
        seed=random_state,
    )
    module.set_inputs(X1)  # the best (early-stopped) model applied to all training counts
    return module.predict()


@doc_params(inputs=doc_runner_inputs, likelihood=doc_likelihood)
def ae(X1, *, coords=None, random_state: int = 0, **params):
    """Autoencoder with the spatial loss.

    Parameters
    ----------
    {inputs}
    n_latent, hidden, dropout
        Latent dimension, encoder hidden widths, encoder dropout.
    spatial_weight
        Spatial loss strength per molecule of a typical spot (``0``: off).
    space
        ``"latent"`` (differences of latents) or ``"genes"`` (centred log proportions summed
        over genes).
    weights, similarity, n_neighbors
        Ring weights, optional similarity gating, kNN size on irregular data.
    {likelihood}
    max_epochs, patience, lr, batch_size, device
        Training (epochs of 10 full-batch steps or one pass of ``batch_size`` spots);
        early stopping patience in epochs.
    """
    return ae_predict(X1, coords=coords, random_state=random_state, **params)


def ae_nospatial(X1, *, coords=None, random_state: int = 0, **params):
    """:func:`ae` with the spatial loss switched off (``spatial_weight=0``)."""
    params["spatial_weight"] = 0.0
    return ae_predict(X1, coords=None, random_state=random_state, method="ae_nospatial", **params)
