"""Neural matrix factorisation with a spatial loss.

Spot embeddings ``U`` (n_spots x d), gene embeddings ``V`` (n_genes x d) and a gene bias
``b`` (initialised at the log pooled gene profile, so that the untrained model *is* the gene
mean predictor) give proportions ``P = softmax_genes(b + U V^T)``. The objective is the count
likelihood of the training counts given each spot's library size, plus
``alpha / 2 (||U||^2 + ||V||^2)`` (a nuclear-norm-like shrinkage towards the gene mean) plus
``spatial_weight / 2`` times the spatial loss of :mod:`.spatial_loss` (by default the
squared difference of the spots' centred log proportions from their ring-weighted
neighbours, summed over genes).

The penalty strengths are chosen by an inner molecular split of the training counts
(:mod:`.selection`): they differ between data sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from scipy import sparse
from torch import nn

from .._docs import doc_params
from ..train import fit
from .models import (
    CountData,
    ProportionModule,
    doc_likelihood,
    doc_runner_inputs,
    gene_log_profile,
)
from .selection import inner_split, select_by_inner_split
from .spatial_loss import SpatialLoss, build_spatial_loss, spatial_penalty

__all__ = ["MFSelection", "MFSettings", "fit_mf", "mf", "mf_nospatial", "mf_refit", "mf_select"]

Space = Literal["genes", "latent"]


class MFModule(ProportionModule):
    """``logits = b + U V^T`` with L2 and spatial penalties (see the module docstring)."""

    def __init__(
        self,
        data: CountData,
        *,
        n_latent: int,
        alpha: float,
        spatial: SpatialLoss | None,
        spatial_weight: float,
        space: Space,
        bias: np.ndarray,
        likelihood: str,
        val_data: CountData | None,
        lr: float,
        seed: int,
        init_scale: float = 0.1,
    ) -> None:
        super().__init__(data, likelihood=likelihood, val_data=val_data, lr=lr)
        n, g = data.shape
        generator = torch.Generator().manual_seed(int(seed))
        self.U = nn.Parameter(init_scale * torch.randn(n, n_latent, generator=generator))
        self.V = nn.Parameter(init_scale * torch.randn(g, n_latent, generator=generator))
        self.b = nn.Parameter(torch.as_tensor(bias, dtype=torch.float32).clone())
        self.alpha = float(alpha)
        self.spatial = spatial if spatial_weight > 0 else None
        self.spatial_weight = float(spatial_weight)
        self.space = space

    def logits(self, index: torch.Tensor | None) -> torch.Tensor:
        U = self.U if index is None else self.U.index_select(0, index)
        return self.b + U @ self.V.T

    def spot_penalty(self, index: torch.Tensor | None) -> torch.Tensor:
        U = self.U if index is None else self.U.index_select(0, index)
        value = 0.5 * self.alpha * (U * U).sum()
        if self.spatial is not None:
            src, dst, w = self.spatial.edges(index)
            gram = None
            if self.space == "genes":
                Vc = self.V - self.V.mean(0)
                gram = Vc.T @ Vc
            value = value + 0.5 * self.spatial_weight * spatial_penalty(
                self.U.index_select(0, src), self.U.index_select(0, dst), w, gram=gram
            )
        return value

    def global_penalty(self) -> torch.Tensor:
        return 0.5 * self.alpha * (self.V * self.V).sum()

    def state(self) -> dict[str, torch.Tensor]:
        """Parameters to warm-start another fit on the same spots and genes."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}


@dataclass(frozen=True)
class MFSettings:
    """Options of :func:`fit_mf` (see :func:`mf` for their meaning)."""

    n_latent: int = 64
    alpha: float = 1.0
    spatial_weight: float = 0.0
    space: Space = "genes"
    likelihood: str = "poisson"
    max_epochs: int = 15
    steps_per_epoch: int = 10
    lr: float = 0.05
    batch_size: int | None = None
    device: str = "auto"


def fit_mf(
    X: sparse.csr_matrix,
    settings: MFSettings,
    *,
    spatial: SpatialLoss | None,
    X_val: sparse.csr_matrix | None = None,
    warm: dict[str, torch.Tensor] | None = None,
    max_epochs: int | None = None,
    seed: int = 0,
) -> MFModule:
    """Fit :class:`MFModule` to ``X`` (optionally warm-started from ``warm``).

    With ``X_val`` (held-out counts of the same spots) the validation deviance is tracked,
    training stops early when it no longer improves and the best epoch's weights are kept.
    """
    module = MFModule(
        CountData(X),
        n_latent=settings.n_latent,
        alpha=settings.alpha,
        spatial=spatial,
        spatial_weight=settings.spatial_weight,
        space=settings.space,
        bias=gene_log_profile(X),
        likelihood=settings.likelihood,
        val_data=None if X_val is None else CountData(X_val),
        lr=settings.lr,
        seed=seed,
    )
    if warm is not None:  # a fit of another likelihood lacks its own parameters: kept
        module.load_state_dict(warm, strict=not set(dict(module.named_parameters())) - set(warm))
    batch = settings.batch_size
    steps = settings.steps_per_epoch if batch is None or batch >= X.shape[0] else None
    fit(
        module,
        n_train=X.shape[0],
        n_val=None if X_val is None else X.shape[0],
        batch_size=batch,
        val_batch_size=batch,
        steps_per_epoch=steps,
        max_epochs=settings.max_epochs if max_epochs is None else max_epochs,
        patience=3,
        device=settings.device,
        seed=seed,
    )
    return module


# ----------------------------------------------------------------------------- methods


def _with_penalties(base: MFSettings, penalties: dict[str, float], scale: float) -> MFSettings:
    """``base`` with the absolute penalty strengths: ``penalties`` (``alpha``,
    ``spatial_weight``) are per molecule of a typical spot, ``scale`` its molecules."""
    return replace(
        base,
        alpha=float(penalties["alpha"] * scale),
        spatial_weight=float(penalties["spatial_weight"] * scale),
    )


def _grid(value, default: Sequence[float]) -> list[float]:
    if value == "auto":
        return [float(v) for v in default]
    if isinstance(value, int | float):
        return [float(value)]
    return [float(v) for v in value]


#: Candidate penalty strengths searched by the inner split (per molecule of a typical spot,
#: see :func:`_scale`): L2 on the embeddings and the spatial loss. The spatial strengths are
#: log-spaced and searched as a warm-started path from weak to strong that stops once the
#: inner deviance gets worse (measured in ``benchmarks/results/impute.md``: the best fixed
#: strength is 0.01 on the breast slices and 0.1 on MERFISH, 3% below 0.01 there; 0.001 was
#: never better than 0.01 and is left out to keep ``auto`` within its time budget).
ALPHA_GRID = (0.05, 0.1, 0.3)
SPATIAL_GRID = (0.0, 0.01, 0.1, 1.0)


#: Full-batch training up to this many matrix entries; above it minibatches of spots of
#: about this many entries (so 50k spots x 5k genes trains in bounded memory).
FULL_BATCH_ENTRIES = 2**25


def _auto_batch_size(n_spots: int, n_genes: int) -> int | None:
    if n_spots * n_genes <= FULL_BATCH_ENTRIES:
        return None
    return max(256, FULL_BATCH_ENTRIES // n_genes)


def _warm_epochs(max_epochs: int) -> int:
    """Epochs of a warm-started fit (a neighbouring candidate's or the inner fit's weights):
    a fifth of a cold fit, at least 3. Measured against 5 warm epochs: ``auto`` 29% faster
    on 4,000 x 2,000 and at most 0.4% higher deviance on the shared data
    (``benchmarks/results/impute_speed.md``)."""
    return max(3, max_epochs // 5)


def _scale(X: sparse.csr_matrix) -> float:
    """Mean library size: penalties are given per molecule of a typical spot, so the same
    candidate values fit data sets of any depth (the absolute strength chosen on the inner
    split is kept for the refit on all of ``X1``)."""
    return max(float(X.sum()) / X.shape[0], 1.0)


@dataclass
class MFSelection:
    """What :func:`mf_select` chose on the inner split, ready for :func:`mf_refit`."""

    chosen: dict[str, float]
    scale: float
    warm: dict[str, torch.Tensor] | None
    scores: list[tuple[dict[str, Any], float]]
    base: MFSettings  # alpha and spatial_weight: see _with_penalties
    spatial: SpatialLoss | None
    heldout: np.ndarray | None = None
    rows: np.ndarray | None = None  # the winner's P at selection.score_rows (all genes)

    @property
    def best_score(self) -> float:
        """Inner-split deviance of the chosen candidate (``inf`` when nothing was searched)."""
        return min((score for _, score in self.scores), default=float("inf"))


def mf_select(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    n_latent: int = 64,
    alpha: float | Sequence[float] | str = "auto",
    spatial_weight: float | Sequence[float] | str = "auto",
    space: Space = "latent",
    weights: Sequence[float] = (1.0, 0.5),
    similarity: str | None = None,
    similarity_features: np.ndarray | None = None,
    n_neighbors: int = 6,
    likelihood: str = "poisson",
    max_epochs: int = 15,
    lr: float = 0.05,
    batch_size: int | str | None = "auto",
    device: str = "auto",
    method: str = "mf",
    score_single: bool = False,
    split=None,
) -> MFSelection:
    """Choose the penalty strengths of :func:`mf` on the inner split of ``X1`` (no refit).

    With a single candidate nothing is fitted here (its inner deviance is ``inf``) unless
    ``score_single``, which scores it on the inner split too (to compare model families).
    ``split``: that inner split when the caller already has it.
    """
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
    if batch_size == "auto":
        batch_size = _auto_batch_size(*X1.shape)
    alphas = _grid(alpha, ALPHA_GRID)
    lams = [0.0] if spatial is None else _grid(spatial_weight, SPATIAL_GRID)
    base = MFSettings(
        n_latent=int(n_latent),
        space=space,
        likelihood=likelihood,
        max_epochs=int(max_epochs),
        lr=float(lr),
        batch_size=batch_size,
        device=device,
    )
    warm_epochs = _warm_epochs(base.max_epochs)

    def fit_candidate(Xa, Xb, params, warm):
        settings = _with_penalties(base, params, _scale(Xa))
        epochs = None if warm is None else warm_epochs
        module = fit_mf(
            Xa, settings, spatial=spatial, warm=warm, max_epochs=epochs, seed=random_state
        )
        return module.predict(), module.state()

    if len(alphas) == 1 and len(lams) == 1 and not score_single:
        return MFSelection(
            chosen={"alpha": alphas[0], "spatial_weight": lams[0]},
            scale=_scale(X1),
            warm=None,
            scores=[],
            base=base,
            spatial=spatial,
        )
    # coordinate search on the inner split, every fit warm-started from the previous:
    # (1) L2 strength, strongest first, with the first spatial weight, stopping once the
    # score gets worse; (2) the spatial weights at the chosen L2 strength, a path from weak
    # to strong, stopping once the score gets worse
    if split is None:
        split = inner_split(X1, random_state=random_state)
    first = select_by_inner_split(
        X1,
        [{"alpha": a, "spatial_weight": lams[0]} for a in sorted(alphas, reverse=True)],
        fit_candidate,
        random_state=random_state,
        stop_when_worse=True,
        split=split,
    )
    selection, scores = first, list(first.scores)
    if len(lams) > 1:
        second = select_by_inner_split(
            X1,
            [{"alpha": first.best["alpha"], "spatial_weight": w} for w in sorted(lams[1:])],
            fit_candidate,
            random_state=random_state,
            warm=first.best_state,
            stop_when_worse=True,
            split=split,
        )
        if second.best_score < first.best_score:
            selection = second
        scores += second.scores
    return MFSelection(
        chosen=selection.best,
        scale=selection.scale,
        warm=selection.best_state,
        scores=scores,
        base=base,
        spatial=spatial,
        heldout=selection.best_heldout,
        rows=selection.best_rows,
    )


def mf_refit(
    X1,
    selection: MFSelection,
    *,
    random_state: int = 0,
    likelihood: str | None = None,
) -> np.ndarray:
    """Refit on all of ``X1`` with the chosen absolute strengths (warm: the inner fit).
    ``likelihood``: refit with another likelihood than the search's (warm-started all the
    same; its own parameters start at their defaults)."""
    settings = _with_penalties(selection.base, selection.chosen, selection.scale)
    if likelihood is not None:
        settings = replace(settings, likelihood=likelihood)
    warm_epochs = _warm_epochs(settings.max_epochs)
    module = fit_mf(
        X1,
        settings,
        spatial=selection.spatial,
        warm=selection.warm,
        max_epochs=None if selection.warm is None else warm_epochs,
        seed=random_state,
    )
    return module.predict()


def mf_predict(X1, *, random_state: int = 0, return_info: bool = False, **params):
    """Proportions from neural matrix factorisation (see :func:`mf`): :func:`mf_select`
    then :func:`mf_refit`."""
    selection = mf_select(X1, random_state=random_state, **params)
    P = mf_refit(X1, selection, random_state=random_state)
    if return_info:
        return P, {"chosen": selection.chosen, "scores": selection.scores}
    return P


@doc_params(inputs=doc_runner_inputs, likelihood=doc_likelihood)
def mf(X1, *, coords=None, random_state: int = 0, **params):
    """Neural matrix factorisation with the spatial loss.

    Parameters
    ----------
    {inputs}
    n_latent
        Embedding dimension ``d`` (default 64; the L2 penalty decides how much of it is used).
    alpha
        L2 strength on the embeddings per molecule of a typical spot; ``"auto"`` (default)
        picks it from ``ALPHA_GRID`` by the inner split, a list restricts the search.
    spatial_weight
        Spatial loss strength per molecule of a typical spot; ``"auto"`` picks it from
        ``SPATIAL_GRID`` (0 and log-spaced 0.01, 0.1, 1, searched as a warm-started path
        that stops once the inner deviance gets worse) by the inner split; a list restricts
        the search; ``0`` switches the loss off. The chosen value is returned with
        ``return_info=True`` (``tl.impute`` records it in ``uns[key]["params"]["chosen"]``).
    space
        ``"genes"`` (differences of centred log proportions summed over genes) or
        ``"latent"`` (differences of spot embeddings).
    weights
        Ring weights (order 1, order 2).
    similarity
        ``None`` or ``"gaussian"``/``"correlation"``: gate the spatial edges by expression
        similarity so that the loss does not smooth across tissue boundaries.
    similarity_features
        Features for that similarity instead of the expression, one row per spot.
    {likelihood}
    max_epochs, lr, batch_size, device
        Training: epochs of 10 full-batch steps (or one pass of ``batch_size`` spots), Adam
        learning rate, spots per minibatch (``None``: full batch; ``"auto"``: full batch
        up to ``FULL_BATCH_ENTRIES`` matrix entries, minibatches above), ``"auto"``/
        ``"cpu"``/``"cuda"``.
    """
    return mf_predict(X1, coords=coords, random_state=random_state, **params)


def mf_nospatial(X1, *, coords=None, random_state: int = 0, **params):
    """:func:`mf` with the spatial loss switched off (``spatial_weight=0``)."""
    params["spatial_weight"] = 0.0
    return mf_predict(X1, coords=None, random_state=random_state, method="mf_nospatial", **params)
