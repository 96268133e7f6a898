"""``method="auto"``: the measured best default.

Two model families fit different tissues: the log-linear neural matrix factorisation with
the spatial loss (:mod:`.mf`) is best on single-cell data (MERFISH) and on the breast
slices, the mixture of expression programs (:mod:`.mixture`) where spots mix a few cell
types. Both are tuned on the same inner molecular split of ``X1`` (the held-out half of the
evaluation protocol is never seen); then the convex blend ``w P_mf + (1 - w) P_mixture``
with ``w`` in :data:`BLEND_GRID` that has the lowest deviance on that split is chosen
(``w`` = 1 or 0 is one family alone), and the families it uses are refitted on all of
``X1``. Blending two different models beats either alone on every shared data set; see
``benchmarks/results/impute.md`` for the measurements behind it.

Two more steps (issue 20, measured there): the expression-space smoother
(:func:`.baselines.neighbours.diffusion`) is blended in with a share from
:data:`SMOOTH_GRID` chosen on the same inner split, and the result is the prior of a
Gamma-Poisson posterior given each spot's own counts (:mod:`.posterior`): together -1.0 to
-1.5% deviance on the breast slices, -1.1% on MERFISH. The posterior step's three knobs
(a share of the ``shrinkage`` baseline in the prior, the floor of the inverse shape, the
spatial neighbours' counts as extra evidence) are chosen on the same inner split
(:func:`.posterior.choose_on_split`): another -0.2 to -0.5% on the breast slices and
MERFISH. The autoencoder is not a candidate:
even blended with a weight chosen on the held-out molecules themselves it does not lower
``auto``'s deviance (breast1, MERFISH) and it costs more CPU than MF.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .baselines.neighbours import diffusion
from .mf import mf_refit, mf_select
from .mixture import mixture_refit, mixture_select
from .posterior import PosteriorChoice, apply_posterior, choose_on_split
from .selection import blend_deviance, heldout_values, inner_split
from .zeros import choose_likelihood, tests_zeros

__all__ = ["BLEND_GRID", "DROPOUT_LIKELIHOODS", "SMOOTH_GRID", "auto", "auto_predict"]

#: Candidate weights of the MF family in the blend (the mixture gets ``1 - w``).
BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Candidate shares of the expression-space smoother (``diffusion``) blended into the
#: model blend, chosen on the same inner split (``0``: the model blend alone).
SMOOTH_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: Likelihoods that model dropout: with them ``blend="auto"`` means MF alone (see
#: :func:`auto_predict`).
DROPOUT_LIKELIHOODS = ("zinb",)

_MIXTURE_PARAMS = ("rank", "max_rank", "prior")


def auto_predict(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    blend: float | Sequence[float] | str = "auto",
    smooth: float | Sequence[float] | str = "auto",
    posterior: str | bool = "auto",
    return_info: bool = False,
    **params,
):
    """Tune both families on the inner split, choose the blend weight there, refit.

    ``params`` named ``rank``, ``max_rank`` or ``prior`` go to the mixture family, the others
    to :func:`.mf.mf_select`. ``blend``: ``"auto"`` searches :data:`BLEND_GRID`; a number
    or list fixes or restricts the MF weight (``1.0``: MF alone, ``0.0``: mixture alone).
    With a dropout likelihood (``likelihood="zinb"``) ``"auto"`` is MF alone: held-out
    molecules share the training half's dropout holes, so a blend scored on them would
    prefer the mixture that reproduces the holes to the MF that fills them.

    ``smooth``: share of the expression-space smoother (:func:`.baselines.neighbours.diffusion`)
    in a second blend with the model blend, ``(1 - v) P_models + v P_diffusion``;
    ``"auto"`` searches :data:`SMOOTH_GRID` on the same inner split when ``blend`` is
    ``"auto"`` (otherwise ``0``); a number or list fixes or restricts it.

    The posterior step's shrinkage share, floor and neighbour weight are chosen on the
    inner split (:func:`.posterior.choose_on_split`; ``info["chosen"]``) when the families
    were scored there, else it runs plain.

    ``posterior``: end with each spot's own counts on top of the blend
    (:func:`.posterior.posterior_mean`, the Gamma-Poisson posterior mean with the blend as
    prior): ``"on"``, ``"off"``, or ``"auto"``: on when ``blend`` is ``"auto"``. A dropout
    likelihood turns ``smooth`` and ``posterior`` off (both would bring the holes back).

    ``likelihood``: ``"auto"`` (the default) is ``"zinb"`` where the counts show technical
    dropout by the excess-zeros test (:func:`.zeros.excess_zeros`), else the Poisson
    default; the test's statistic is recorded in ``chosen``. Any other value stands. With
    a dropout likelihood MF's penalties are searched with the Poisson likelihood (the inner
    split scores both by the Poisson deviance of held-out molecules, which share the
    holes) and the dropout model is fitted once, warm-started from that search
    (:func:`.mf.mf_refit`): at 4,000 x 2,000 about the Poisson ``auto``'s CPU time instead
    of 3.3x, and as accurate (``benchmarks/results/impute_dropout.md``).
    """
    # the diffusion of X1, computed once: the zero test's smooth mean, then the smoother
    full_smooth = diffusion(X1, random_state=random_state) if tests_zeros(params) else None
    params, zero_choice = choose_likelihood(
        X1, params, random_state=random_state, smooth=full_smooth
    )
    if smooth == "auto":
        smooth = SMOOTH_GRID if blend == "auto" else 0.0
    posterior = blend == "auto" if posterior == "auto" else posterior in ("on", True)
    if blend == "auto" and params.get("likelihood") in DROPOUT_LIKELIHOODS:
        # the blend is scored by the Poisson deviance of held-out molecules, which share the
        # dropout holes of the training half: it would always pick the model that keeps
        # the holes (measured in benchmarks/results/impute.md), so MF alone
        blend, smooth, posterior = 1.0, 0.0, False
    grid = _blend_grid(blend)
    smooth_grid = _blend_grid(smooth, name="smooth")
    if max(smooth_grid) == 0:
        full_smooth = None  # not blended in: not kept through the fits
    mixture_params = {k: params.pop(k) for k in _MIXTURE_PARAMS if k in params}
    if coords is None:
        params.setdefault("spatial_weight", 0.0)
    mf_sel = mixture_sel = None
    split = inner_split(X1, random_state=random_state)  # one inner split serves both families
    # a dropout likelihood: penalties searched with the Poisson MF (both are scored by the
    # Poisson deviance of held-out molecules, blind to dropout), then one warm refit
    refit_likelihood = params.pop("likelihood", None)
    if refit_likelihood not in DROPOUT_LIKELIHOODS:
        params["likelihood"], refit_likelihood = refit_likelihood or "poisson", None
    if any(w > 0 for w in grid):
        mf_sel = mf_select(
            X1,
            coords=coords,
            random_state=random_state,
            method="auto",
            score_single=True,
            split=split,
            **params,
        )
    if any(w < 1 for w in grid):
        mixture_sel = mixture_select(X1, random_state=random_state, split=split, **mixture_params)
    if mf_sel is None or mixture_sel is None:
        w, scores = grid[0], {}
    else:
        values = [mf_sel.heldout, mixture_sel.heldout]
        scores = {w: blend_deviance(values, [w, 1.0 - w], split[1]) for w in grid}
        w = min(grid, key=lambda v: (scores[v], -v))
    models = (w, mf_sel, mixture_sel)
    inner_smooth = None  # diffusion of the inner training half, when something needs it
    if len(smooth_grid) > 1 or (posterior and smooth_grid[0] > 0):
        inner_smooth = diffusion(split[0], coords=coords)
    v, smooth_scores = _choose_smooth(split, smooth_grid, models, inner_smooth)
    choice = PosteriorChoice()
    if posterior:
        choice = _choose_posterior(split, models, (v, inner_smooth), coords, random_state)
    # both parts are proportions (rows sum to 1), so is their convex blend; in place, as
    # each is a dense spots x genes matrix
    P = None
    if w > 0:
        P = mf_refit(X1, mf_sel, random_state=random_state, likelihood=refit_likelihood)
        P *= w
    if w < 1:
        Q = mixture_refit(X1, mixture_sel, random_state=random_state)
        Q *= 1.0 - w
        P = Q if P is None else np.add(P, Q, out=P)
        del Q
    if v > 0:
        P *= 1.0 - v
        if full_smooth is None:
            full_smooth = diffusion(X1, coords=coords, random_state=random_state)
        full_smooth *= v
        P += full_smooth
    del full_smooth
    if posterior:
        P = apply_posterior(X1, P, choice, coords=coords, random_state=random_state)
    if not return_info:
        return P
    info: dict[str, Any] = {"blend": w, "blend_scores": scores}
    info["smooth"], info["smooth_scores"] = v, smooth_scores
    info["posterior_scores"] = choice.scores
    if mf_sel is not None:
        info["mf"] = {"chosen": mf_sel.chosen, "inner_deviance": mf_sel.best_score}
    if mixture_sel is not None:
        info["mixture"] = {
            "rank": mixture_sel.rank,
            "prior": mixture_sel.prior,
            "inner_deviance": mixture_sel.best_score,
        }
    # what was chosen, compact (recorded by tl.impute in uns[key]["params"]["chosen"])
    info["chosen"] = {"blend": w, "smooth": v, "posterior": bool(posterior)}
    info["chosen"].update(zero_choice)  # the likelihood "auto" chose, and why
    if w > 0:
        info["chosen"]["mf"] = dict(mf_sel.chosen)
    if w < 1:
        info["chosen"]["mixture"] = {"rank": mixture_sel.rank, "prior": mixture_sel.prior}
    if posterior:  # the posterior step's knobs
        info["chosen"].update(
            shrink=choice.shrink, floor=choice.floor, neighbours=choice.neighbours
        )
    return P, info


def _choose_smooth(split, grid, models, inner_smooth) -> tuple[float, dict[float, float]]:
    """Share of ``diffusion`` in the second blend, by the inner split (``grid[0]`` when
    there is nothing to choose): the model blend ``models = (w, mf_sel, mixture_sel)`` and
    ``inner_smooth`` (``diffusion`` of the inner training half), scored on the held-out half."""
    if len(grid) == 1:
        return grid[0], {}
    w, mf_sel, mixture_sel = models
    parts = [(w, mf_sel), (1.0 - w, mixture_sel)]
    values = sum(share * sel.heldout for share, sel in parts if sel is not None and share > 0)
    smoothed = heldout_values(inner_smooth, split[1])
    scores = {v: blend_deviance([values, smoothed], [1.0 - v, v], split[1]) for v in grid}
    return min(grid, key=lambda v: (scores[v], v)), scores


def _choose_posterior(split, models, smoothing, coords, random_state) -> PosteriorChoice:
    """The posterior step's knobs (:func:`.posterior.choose_on_split`), the prior being the
    inner fit of the chosen blend ``(1 - v) P_models + v P_diffusion``; without the
    families' inner fits, the plain step."""
    w, mf_sel, mixture_sel = models
    parts = [(share, sel) for share, sel in ((w, mf_sel), (1.0 - w, mixture_sel)) if share > 0]
    if any(sel is None or sel.rows is None for _, sel in parts):
        return PosteriorChoice()
    prior = sum(share * sel.rows for share, sel in parts)
    return choose_on_split(
        split, prior, smoother=smoothing, coords=coords, random_state=random_state
    )


def _blend_grid(blend, name: str = "blend") -> list[float]:
    default = BLEND_GRID if name == "blend" else SMOOTH_GRID
    values = list(default) if blend == "auto" else list(np.atleast_1d(blend))
    try:
        grid = [float(v) for v in values]
    except (TypeError, ValueError):
        grid = []
    if not grid or any(not (0.0 <= v <= 1.0) for v in grid):
        what = "the MF share" if name == "blend" else "the share of diffusion"
        raise InputError(
            f"{name}={blend!r} must be 'auto' or weights in [0, 1] ({what}); pass e.g. {name}=0.5"
        )
    return grid


def auto(X1, *, coords=None, random_state: int = 0, **params):
    """The best default measured on the shared data (see the module docstring). Without
    coordinates the spatial loss is left out (it is one of the candidates anyway)."""
    return auto_predict(X1, coords=coords, random_state=random_state, **params)
