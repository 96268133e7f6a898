"""Gradient mapper: a softmax mapping of cells onto spots fitted by gradient descent.

After Tangram (Biancalani et al. 2021, "cells" mode), re-derived: each cell ``i`` has logits
over candidate spots; ``M_i = softmax(logits_i)`` says where the cell goes. The predicted
spot profiles are ``G = M^T S`` (``S``: the cells' features) and the loss is

``- mean_g cos(G[:, g], X[:, g]) - lambda_spot * mean_j cos(G[j], X[j])
+ lambda_density * KL(d || M^T 1 / n_cells) - lambda_entropy * H(M)``

with ``X`` the spots' features and ``d`` a cell-density prior over spots (uniform, or
proportional to the spots' totals). Differences from Tangram: candidate spots per cell can be
restricted to the most similar ones (so that the parameters are ``n_cells x k``, not dense
beyond a size limit), and training is minibatched over cells: the spot profiles of the cells
outside the batch are cached (refreshed every epoch), so each step is exact up to the drift
of the other cells since the refresh. Training goes through :func:`cellweave.train.fit`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from ..errors import InputError
from ..ot import MAX_DENSE, topk_similar, unit_rows
from ..train import CellweaveModule, fit

__all__ = ["GradientMapper", "gradient_plan"]

# Largest batch x candidates x features block formed at once with candidate spots.
_BATCH_ENTRIES = 2**24
# Full-batch optimisation steps grouped into one Lightning epoch.
_STEPS_PER_EPOCH = 10


class GradientMapper(CellweaveModule):
    """Lightning module holding the logits of the cells over their candidate spots.

    Parameters
    ----------
    S
        ``(n_cells, d)`` cell features.
    X
        ``(n_spots, d)`` spot features.
    candidates
        ``(n_cells, k)`` candidate spot indices per cell.
    density
        ``(n_spots,)`` prior cell density over spots (sums to 1).
    lambda_spot, lambda_density, lambda_entropy
        Weights of the per-spot cosine, density and entropy terms.
    init
        ``(n_cells, k)`` initial logits (default zeros).
    lr
        Adam learning rate.
    """

    def __init__(
        self,
        S: np.ndarray,
        X: np.ndarray,
        candidates: np.ndarray,
        density: np.ndarray,
        *,
        lambda_spot: float = 1.0,
        lambda_density: float = 1.0,
        lambda_entropy: float = 0.0,
        init: np.ndarray | None = None,
        lr: float = 0.1,
    ) -> None:
        import torch

        super().__init__(lr=lr)
        self.S = torch.as_tensor(S, dtype=torch.float32)
        self.X = torch.as_tensor(X, dtype=torch.float32)
        self.cand = torch.as_tensor(candidates, dtype=torch.long)
        self.density = torch.as_tensor(density, dtype=torch.float32)
        start = np.zeros(candidates.shape, dtype=np.float32) if init is None else init
        self.logits = torch.nn.Parameter(torch.as_tensor(start, dtype=torch.float32))
        self.lambda_spot = float(lambda_spot)
        self.lambda_density = float(lambda_density)
        self.lambda_entropy = float(lambda_entropy)
        self.n_cells, self.n_spots = S.shape[0], X.shape[0]
        self.dense = candidates.shape[1] == self.n_spots and bool(
            (np.asarray(candidates) == np.arange(self.n_spots)).all()
        )
        self._cache_G: Any = None
        self._cache_mass: Any = None
        self._pending: Any = None

    def move_data(self, device) -> None:
        for name in ("S", "X", "cand", "density"):
            setattr(self, name, getattr(self, name).to(device))
        self._cache_G = self._cache_mass = None

    # ------------------------------------------------------------------ pieces
    def _contribution(self, index):
        """Spot profiles and spot masses of the cells ``index`` (differentiable)."""
        import torch

        probs = torch.softmax(self.logits[index], dim=1)  # (b, k)
        S = self.S[index]
        if self.dense:  # every spot is a candidate, in order: one matrix product
            return probs.T @ S, probs.sum(dim=0), probs
        spots = self.cand[index].reshape(-1)
        k = probs.shape[1]
        weighted = probs.reshape(-1, 1) * S.repeat_interleave(k, dim=0)
        G = torch.zeros(self.n_spots, S.shape[1], device=probs.device, dtype=probs.dtype)
        G = G.index_add(0, spots, weighted)
        mass = torch.zeros(self.n_spots, device=probs.device, dtype=probs.dtype)
        mass = mass.index_add(0, spots, probs.reshape(-1))
        return G, mass, probs

    def _refresh(self) -> None:
        import torch

        with torch.no_grad():
            G = torch.zeros(self.n_spots, self.S.shape[1], device=self.S.device)
            mass = torch.zeros(self.n_spots, device=self.S.device)
            step = max(1, _BATCH_ENTRIES // max(1, self.cand.shape[1] * self.S.shape[1]))
            for start in range(0, self.n_cells, step):
                index = torch.arange(start, min(start + step, self.n_cells), device=G.device)
                g, m, _ = self._contribution(index)
                G += g
                mass += m
        self._cache_G, self._cache_mass = G, mass

    def _objective(self, index):
        import torch
        import torch.nn.functional as F

        G_b, mass_b, probs = self._contribution(index)
        if index.numel() == self.n_cells:
            G, mass = G_b, mass_b
        else:
            if self._cache_G is None:
                self._refresh()
            with torch.no_grad():
                G_old, mass_old, _ = self._contribution(index)
            self._pending = (index, G_old, mass_old)
            G = self._cache_G - G_old + G_b
            mass = self._cache_mass - mass_old + mass_b
        loss = -F.cosine_similarity(G, self.X, dim=0, eps=1e-8).mean()
        if self.lambda_spot:
            loss = loss - self.lambda_spot * F.cosine_similarity(G, self.X, dim=1, eps=1e-8).mean()
        if self.lambda_density:
            d_pred = mass / self.n_cells
            log_ratio = torch.log(self.density + 1e-12) - torch.log(d_pred + 1e-12)
            kl = (self.density * log_ratio).sum()
            loss = loss + self.lambda_density * kl
        if self.lambda_entropy:
            entropy = -(probs * torch.log(probs + 1e-12)).sum(dim=1).mean()
            loss = loss - self.lambda_entropy * entropy
        return loss

    # ------------------------------------------------------------------ Lightning
    def loss(self, index):
        return self._objective(index)

    def validation_loss(self, index):
        return self._objective(index)

    def on_train_epoch_start(self) -> None:
        self._cache_G = None

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # The step moved the batch's cells: replace their cached contribution.
        pending, self._pending = self._pending, None
        if pending is None or self._cache_G is None:
            return
        import torch

        index, G_old, mass_old = pending
        with torch.no_grad():
            G_new, mass_new, _ = self._contribution(index)
        self._cache_G += G_new - G_old
        self._cache_mass += mass_new - mass_old

    def plan(self) -> sparse.csr_matrix:
        """``(n_cells, n_spots)`` plan: each cell's softmax over its candidates / n_cells."""
        import torch

        with torch.no_grad():
            probs = torch.softmax(self.logits, dim=1).cpu().numpy().astype(np.float64)
        k = probs.shape[1]
        rows = np.repeat(np.arange(self.n_cells), k)
        cols = self.cand.cpu().numpy().ravel()
        values = probs.ravel() / self.n_cells
        return sparse.csr_matrix((values, (rows, cols)), shape=(self.n_cells, self.n_spots))


def gradient_plan(
    F_sc: np.ndarray,
    F_sp: np.ndarray,
    *,
    density: np.ndarray | None = None,
    n_candidates: int | None = None,
    lambda_spot: float = 1.0,
    lambda_density: float = 1.0,
    lambda_entropy: float = 0.0,
    lr: float = 0.1,
    max_epochs: int = 300,
    batch_size: int | None = None,
    max_dense: int = MAX_DENSE,
    random_state: int = 0,
    device: str = "auto",
) -> tuple[sparse.csr_matrix, dict[str, Any]]:
    """Fit the gradient mapper and return its plan and a training summary (with the loss
    weights, ``lr`` and ``max_epochs`` it used).

    Parameters
    ----------
    F_sc, F_sp
        ``(n_cells, d)`` and ``(n_spots, d)`` features (the genes, so that per-gene cosines
        mean something).
    density
        Prior cell density over spots (default uniform).
    n_candidates
        Candidate spots per cell (by cosine similarity). Default: every spot when
        ``n_cells * n_spots <= max_dense``, else 100.
    lambda_spot, lambda_density, lambda_entropy
        Loss weights (see :class:`GradientMapper`).
    lr, max_epochs
        Adam learning rate and epochs (passes over the cells).
    batch_size
        Cells per step (``None``: all cells when they fit ``max_dense`` entries, else 4096).
    max_dense
        Largest ``n_cells x n_candidates`` logits matrix with all spots as candidates.
    random_state
        Seed of the initialization, batch order and Lightning.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or ``"mps"``
        (:func:`cellweave.device.parse_device`).
    """
    n_cells, n_spots = F_sc.shape[0], F_sp.shape[0]
    if n_candidates is None:
        n_candidates = n_spots if n_cells * n_spots <= max_dense else 100
    k = int(min(max(1, n_candidates), n_spots))
    if k == n_spots:
        candidates = np.broadcast_to(np.arange(n_spots), (n_cells, n_spots)).copy()
    else:
        candidates, _ = topk_similar(unit_rows(F_sc), unit_rows(F_sp), k=k, device=device)
    if density is None:
        density = np.full(n_spots, 1.0 / n_spots)
    density = np.asarray(density, dtype=np.float64)
    if density.shape != (n_spots,) or (density < 0).any() or density.sum() <= 0:
        raise InputError("density must be one non-negative value per spot with a positive sum")
    density = density / density.sum()
    rng = np.random.default_rng(random_state)
    init = rng.normal(0.0, 1e-3, size=(n_cells, k)).astype(np.float32)
    module = GradientMapper(
        F_sc,
        F_sp,
        candidates,
        density,
        lambda_spot=lambda_spot,
        lambda_density=lambda_density,
        lambda_entropy=lambda_entropy,
        init=init,
        lr=lr,
    )
    if batch_size is None and (
        n_cells * k > max_dense or (k < n_spots and n_cells * k * F_sc.shape[1] > _BATCH_ENTRIES)
    ):
        batch_size = max(1, min(4096, _BATCH_ENTRIES // max(1, k * F_sc.shape[1])))
    if batch_size is None or batch_size >= n_cells:
        # full batch: group the steps into Lightning epochs of _STEPS_PER_EPOCH (less overhead)
        steps = max(1, min(_STEPS_PER_EPOCH, int(max_epochs)))
        epochs = -(-int(max_epochs) // steps)
    else:
        steps, epochs = None, int(max_epochs)
    result = fit(
        module,
        n_train=n_cells,
        n_val=None,
        batch_size=batch_size,
        steps_per_epoch=steps,
        max_epochs=epochs,
        early_stopping=False,
        device=device,
        seed=int(random_state),
    )
    passes = len(result.epochs) * (steps or 1)
    info = {
        "epochs": passes,
        "steps": result.global_step,
        "device": result.device,
        "seconds": result.seconds,
        "lambda_spot": lambda_spot,
        "lambda_density": lambda_density,
        "lambda_entropy": lambda_entropy,
        "lr": lr,
        "max_epochs": max_epochs,
    }
    return module.plan(), info
