"""Model selection by an inner molecular split of the training counts.

The best penalty strengths differ between data sets, so they are chosen from the training
counts alone: ``X1`` is split again into ``X1a ~ Binomial(X1, 1/2)`` and ``X1b = X1 - X1a``;
every candidate is fitted to ``X1a`` and scored by the Poisson deviance of ``X1b`` (with
``mu = rowsum(X1b) * P``, so the halved library size of ``X1a`` does not bias the score).
The held-out half ``X2`` of the evaluation protocol is never seen: these functions only
receive ``X1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from ..errors import InputError
from ..metrics.denoising import molecular_split, poisson_deviance

__all__ = ["Selection", "inner_split", "select_by_inner_split"]

#: Offset added to the seed of the inner split, so that it is not the same binomial stream
#: as an outer split drawn with the same seed.
INNER_SEED_OFFSET = 7919


def inner_split(
    X1, *, p: float = 0.5, random_state: int = 0
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Split training counts into ``(X1a, X1b)``: ``X1a ~ Binomial(X1, p)``, ``X1b = X1 - X1a``.

    The stream is seeded with ``random_state + INNER_SEED_OFFSET``.
    """
    seed = int(random_state) + INNER_SEED_OFFSET
    return molecular_split(X1, p=p, random_state=seed)


@dataclass(frozen=True)
class Selection:
    """Result of :func:`select_by_inner_split`.

    Attributes
    ----------
    best
        The winning candidate's parameters.
    scores
        ``(candidate, deviance on X1b)`` in the order fitted.
    scale
        Mean library size of ``X1a`` (penalties given per molecule of a typical spot are
        turned into absolute strengths with it; the refit on ``X1`` reuses the same
        absolute strengths).
    best_state
        What ``fit_candidate`` returned as warm state for the winner (e.g. to warm-start
        the refit).
    """

    best: dict[str, Any]
    scores: list[tuple[dict[str, Any], float]]
    scale: float
    best_state: Any = None


FitCandidate = Callable[
    [sparse.csr_matrix, sparse.csr_matrix, dict[str, Any], Any], tuple[np.ndarray, Any]
]


def select_by_inner_split(
    X1,
    candidates: Sequence[dict[str, Any]],
    fit_candidate: FitCandidate,
    *,
    random_state: int = 0,
    p: float = 0.5,
    warm: Any = None,
) -> Selection:
    """Choose among ``candidates`` by their Poisson deviance on an inner held-out split.

    Parameters
    ----------
    X1
        Training counts (spots x genes); nothing else is needed or seen.
    candidates
        Parameter dictionaries, fitted in this order.
    fit_candidate
        ``fit_candidate(X1a, X1b, params, warm) -> (P, warm)``: fit on ``X1a`` and return
        proportions of every spot (``X1b`` may be used for early stopping) plus a state
        handed to the next candidate (warm starts; ``None`` for the first).
    random_state
        Seed of the inner split.
    p
        Fraction of molecules in ``X1a``.
    warm
        Warm state handed to the first candidate.

    Returns
    -------
    :class:`Selection`; ties go to the earlier candidate.
    """
    if not candidates:
        raise InputError("no candidates to select from; pass at least one parameter set")
    X1a, X1b = inner_split(X1, p=p, random_state=random_state)
    scores: list[tuple[dict[str, Any], float]] = []
    states = []
    for params in candidates:
        P, warm = fit_candidate(X1a, X1b, params, warm)
        score = poisson_deviance(P, X1b) if X1b.nnz else 0.0
        scores.append((dict(params), float(score)))
        states.append(warm)
    best = min(range(len(scores)), key=lambda i: scores[i][1])
    scale = max(float(X1a.sum()) / X1a.shape[0], 1.0)
    return Selection(
        best=dict(scores[best][0]), scores=scores, scale=scale, best_state=states[best]
    )
