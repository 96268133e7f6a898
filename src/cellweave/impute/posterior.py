"""Each spot's own counts on top of a model: the Gamma-Poisson posterior mean.

A model (or a blend of models) gives prior proportions ``P``; the spot's counts ``x_i`` (library
``s_i``) are Poisson with rate ``s_i p_ij``, and ``p_ij`` is Gamma with mean ``P_ij`` and a
per-gene shape ``a_j`` (how far the truth strays from the model for that gene). The posterior
mean is

    ``p_ij = P_ij (x_ij + a_j) / (s_i P_ij + a_j)``

(rows renormalized): genes whose counts vary beyond the model keep part of each spot's own
signal, the others follow the model. ``1 / a_j`` is the method-of-moments estimate of the
extra-Poisson variance, ``sum_i ((x_ij - mu_ij)^2 - x_ij) / sum_i mu_ij^2`` with
``mu_ij = s_i P_ij``, floored at ``floor`` (``MIN_INVERSE_SHAPE``: the model stands).

The moments are taken on the counts the model was fitted to, so they are biased low (the
model has absorbed part of those counts' noise). :func:`choose_posterior` sets three knobs
of the step on the inner molecular split instead (fit on ``X1a``, posterior with ``X1a``'s
counts, Poisson deviance of ``X1b``), in this order: the share of the empirical-Bayes
``shrinkage`` baseline blended into the prior (:data:`SHRINK_GRID`), the floor of ``1 / a_j``
(:data:`FLOOR_GRID`) and the weight of the spatial neighbours' counts as extra evidence
(:data:`NEIGHBOUR_GRID`; the mean counts of the ``N_NEIGHBORS`` nearest spots, times the
weight, added to ``x_i`` and ``s_i``). The neighbours' counts are biased evidence (their
truth differs from the spot's), so their weight must not grow with depth: ``auto`` adds as
many neighbour molecules on all of ``X1`` as the chosen weight did on the half ``X1a``
(the weight times ``X1a``'s total over ``X1``'s, about 1/2). Measured in
``benchmarks/results/impute.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import sparse

from ..graph import knn_graph
from ..metrics.denoising import poisson_deviance
from .baselines.reference import shrinkage, shrinkage_prior
from .baselines.smoothing import library, pooled_profile, shrunk
from .selection import score_rows

__all__ = [
    "FLOOR_GRID",
    "MIN_INVERSE_SHAPE",
    "NEIGHBOUR_GRID",
    "SHRINK_GRID",
    "PosteriorChoice",
    "apply_posterior",
    "choose_on_split",
    "choose_posterior",
    "extra_poisson_variance",
    "neighbour_mean",
    "neighbour_operator",
    "posterior_mean",
]

#: Smallest ``1 / a_j``: genes without measurable extra-Poisson variance follow the model.
MIN_INVERSE_SHAPE = 1e-6
#: Candidate shares of the ``shrinkage`` baseline in the prior (chosen first).
SHRINK_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
#: Candidate floors of ``1 / a_j`` (chosen second).
FLOOR_GRID = (MIN_INVERSE_SHAPE, 0.02, 0.05, 0.1, 0.2)
#: Candidate weights of the neighbours' mean counts as evidence (chosen last).
NEIGHBOUR_GRID = (0.0, 0.25, 0.5, 1.0)
#: Spatial neighbours whose counts are the extra evidence.
N_NEIGHBORS = 6


def extra_poisson_variance(
    X: sparse.csr_matrix, P: np.ndarray, *, floor: float = MIN_INVERSE_SHAPE
) -> np.ndarray:
    """``1 / a_j`` per gene (see the module docstring), at least ``floor``."""
    X = sparse.csr_matrix(X, dtype=np.float64)
    s = np.asarray(X.sum(axis=1)).ravel()
    mu2 = (s**2) @ (P**2)  # sum_i mu_ij^2
    cross = np.asarray(X.multiply(P).multiply(s[:, None]).sum(axis=0)).ravel()  # sum x mu
    x2 = np.asarray(X.multiply(X).sum(axis=0)).ravel()
    x1 = np.asarray(X.sum(axis=0)).ravel()
    excess = x2 - 2.0 * cross + mu2 - x1
    inverse = np.divide(excess, mu2, out=np.zeros_like(mu2), where=mu2 > 0)
    return np.maximum(inverse, max(float(floor), MIN_INVERSE_SHAPE))


def posterior_mean(
    X,
    P: np.ndarray,
    *,
    out: np.ndarray | None = None,
    floor: float = MIN_INVERSE_SHAPE,
    evidence=None,
) -> np.ndarray:
    """Posterior mean proportions of every entry given its counts and the prior ``P``
    (spots x genes, rows summing to 1); written into ``out`` when given (it may be ``P``).

    ``floor``: smallest ``1 / a_j``. ``evidence``: more counts (spots x genes, e.g. the
    weighted neighbour counts of :func:`neighbour_mean`) added to ``X`` as evidence; the
    shapes come from ``X`` alone."""
    X = sparse.csr_matrix(X, dtype=np.float64)
    a = 1.0 / extra_poisson_variance(X, P, floor=floor)
    if evidence is not None:
        X = sparse.csr_matrix(X + evidence)
    s = np.asarray(X.sum(axis=1)).ravel()
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    observed = P[rows, X.indices] * X.data  # P x at the non-zero counts, before P is reused
    denominator = np.multiply(P, s[:, None])
    denominator += a
    Q = np.multiply(P, a, out=out)
    Q[rows, X.indices] += observed
    Q /= denominator
    Q /= Q.sum(axis=1, keepdims=True)
    return Q


def neighbour_operator(coords, *, n_neighbors: int = N_NEIGHBORS) -> sparse.csr_matrix:
    """The row-normalised kNN graph of the spots (by ``coords``; fewer spots than
    ``n_neighbors``: all others): ``operator @ X`` is :func:`neighbour_mean` (all zero
    with a single spot: no neighbours, no evidence)."""
    coords = np.asarray(coords, dtype=np.float64)
    k = min(int(n_neighbors), coords.shape[0] - 1)
    if k < 1:
        return sparse.csr_matrix((coords.shape[0], coords.shape[0]))
    A = knn_graph(coords, n_neighbors=k)[0]
    degree = np.asarray(A.sum(axis=1)).ravel()
    return sparse.diags(1.0 / np.maximum(degree, 1.0)) @ A


def neighbour_mean(
    X, coords=None, *, n_neighbors: int = N_NEIGHBORS, operator=None
) -> sparse.csr_matrix:
    """Mean counts of each spot's ``n_neighbors`` nearest spots (by ``coords``; fewer
    spots than that: all others); ``operator``: :func:`neighbour_operator` of the
    coordinates when the caller has it (then ``coords`` is not read)."""
    X = sparse.csr_matrix(X, dtype=np.float64)
    if operator is None:
        operator = neighbour_operator(coords, n_neighbors=n_neighbors)
    return sparse.csr_matrix(operator @ X)


@dataclass(frozen=True)
class PosteriorChoice:
    """The posterior step's knobs chosen by :func:`choose_posterior`, with the inner
    deviance of every candidate tried (``(shrink, floor, neighbours) -> deviance``);
    ``depth_ratio``: molecules of the half they were chosen on over those of all counts
    (:func:`choose_on_split` sets it; see the module docstring); ``prior_strength``: the
    ``shrinkage`` baseline's prior strength chosen on that half and ``operator``: the
    :func:`neighbour_operator` of the spots, both reused by :func:`apply_posterior`
    (``None``: computed there).
    """

    shrink: float = 0.0
    floor: float = MIN_INVERSE_SHAPE
    neighbours: float = 0.0
    scores: dict[tuple[float, float, float], float] = field(default_factory=dict)
    depth_ratio: float = 1.0
    prior_strength: float | None = None
    operator: sparse.csr_matrix | None = field(default=None, repr=False, compare=False)


def choose_posterior(
    Xa,
    Xb,
    prior: np.ndarray,
    shrunk: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    neighbours=None,
) -> PosteriorChoice:
    """Choose the shrinkage share, the floor and the neighbour weight on the inner split.

    Parameters
    ----------
    Xa, Xb
        The inner split's halves (all spots).
    prior, shrunk
        The model blend and the ``shrinkage`` baseline fitted on ``Xa``, at the spots
        ``rows`` (all spots when ``None``).
    rows
        Spots scored (a subset keeps the cost small on large tissues).
    neighbours
        :func:`neighbour_mean` of ``Xa`` (all spots), or ``None`` (no coordinates: the
        neighbour weight stays 0).

    Returns
    -------
    :class:`PosteriorChoice`; ties go to the weaker setting (earlier in its grid).
    """
    A, B = sparse.csr_matrix(Xa), sparse.csr_matrix(Xb)
    if rows is not None:
        A, B = A[rows], B[rows]
        neighbours = None if neighbours is None else sparse.csr_matrix(neighbours)[rows]
    scores: dict[tuple[float, float, float], float] = {}
    priors: dict[float, np.ndarray] = {}  # the blended prior of each share, built once

    def score(u: float, f: float, b: float) -> float:
        if (u, f, b) not in scores:
            if u not in priors:
                priors[u] = (1.0 - u) * prior + u * shrunk if u > 0 else prior
            P = priors[u]  # read only: no out=
            extra = neighbours * b if b > 0 else None
            scores[u, f, b] = poisson_deviance(posterior_mean(A, P, floor=f, evidence=extra), B)
        return scores[u, f, b]

    u = min(SHRINK_GRID, key=lambda t: score(t, FLOOR_GRID[0], 0.0))
    f = min(FLOOR_GRID, key=lambda t: score(u, t, 0.0))
    grid = NEIGHBOUR_GRID if neighbours is not None else (0.0,)
    b = min(grid, key=lambda t: score(u, f, t))
    return PosteriorChoice(shrink=u, floor=f, neighbours=b, scores=scores)


def choose_on_split(
    split, prior: np.ndarray, *, smoother=None, coords=None, random_state: int = 0
) -> PosteriorChoice:
    """:func:`choose_posterior` for a model fitted on the inner half ``split[0]``.

    ``prior``: its proportions at the spots :func:`.selection.score_rows` keeps (what the
    selections store); ``smoother``: ``(v, P_smooth)``, a full inner-half prediction blended
    in with share ``v``; ``coords``: the spots' coordinates (``None``: no neighbours). The
    ``shrinkage`` baseline of the inner half is computed at those spots only.
    """
    X1a, X1b = (sparse.csr_matrix(X, dtype=np.float64) for X in split)
    rows = score_rows(X1a.shape[0], random_state=random_state)
    if smoother is not None and smoother[0] > 0:
        prior = (1.0 - smoother[0]) * prior + smoother[0] * smoother[1][rows]
    a = shrinkage_prior(X1a, random_state=random_state)
    profile = pooled_profile(X1a)
    part = X1a[rows]
    shrunk_rows = np.tile(profile, (len(rows), 1))
    if np.isfinite(a):
        shrunk_rows = shrunk(part.toarray(), library(part), prior=a, profile=profile)
    operator = None if coords is None else neighbour_operator(coords)
    neighbours = None if operator is None else neighbour_mean(X1a, operator=operator)
    choice = choose_posterior(X1a, X1b, prior, shrunk_rows, rows=rows, neighbours=neighbours)
    total = float(X1a.sum() + X1b.sum())
    depth = float(X1a.sum()) / total if total > 0 else 1.0
    return replace(choice, depth_ratio=depth, prior_strength=a, operator=operator)


def apply_posterior(
    X1, P: np.ndarray, choice: PosteriorChoice, *, coords=None, random_state: int = 0
) -> np.ndarray:
    """The posterior step with ``choice``'s knobs on all counts ``X1``, in place of ``P``:
    the ``shrinkage`` share blended into the prior, then :func:`posterior_mean` with the
    floor and the neighbours' mean counts (as many molecules as on the inner half).

    The ``shrinkage`` baseline keeps the prior strength chosen on the inner half (it does
    not depend on the depth, see :func:`.baselines.reference.shrinkage_prior`; the same
    value as a choice on ``X1`` on the benchmark's six data sets) and the neighbours the
    graph of :func:`choose_on_split` (the same ``coords``)."""
    if choice.shrink > 0:
        P *= 1.0 - choice.shrink
        strength = choice.prior_strength
        P += choice.shrink * shrinkage(X1, random_state=random_state, prior=strength)
    extra = None
    if choice.neighbours > 0 and coords is not None:
        means = neighbour_mean(X1, coords, operator=choice.operator)
        extra = means * (choice.neighbours * choice.depth_ratio)
    return posterior_mean(X1, P, out=P, floor=choice.floor, evidence=extra)
