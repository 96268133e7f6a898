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

__all__ = [
    "Selection",
    "blend_deviance",
    "heldout_values",
    "inner_split",
    "mcv_rank",
    "score_rows",
    "select_by_inner_split",
]

#: Offset added to the seed of the inner split, so that it is not the same binomial stream
#: as an outer split drawn with the same seed.
INNER_SEED_OFFSET = 7919
#: Most spots whose inner-split proportions are kept in full (:attr:`Selection.best_rows`),
#: for the steps scored on whole rows (the posterior step of ``auto``).
MAX_SCORE_ROWS = 1000


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
    best_heldout
        The winner's proportions at the non-zero entries of ``X1b`` (in CSR order): enough
        to score blends of candidates (:func:`blend_deviance`) without keeping ``P``.
    best_rows
        The winner's proportions at the spots :func:`score_rows` names (all of each row).
    """

    best: dict[str, Any]
    scores: list[tuple[dict[str, Any], float]]
    scale: float
    best_state: Any = None
    best_heldout: np.ndarray | None = None
    best_rows: np.ndarray | None = None

    @property
    def best_score(self) -> float:
        """Inner-split deviance of the winner."""
        return min(score for _, score in self.scores)


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
    stop_when_worse: bool = False,
    split: tuple[sparse.csr_matrix, sparse.csr_matrix] | None = None,
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
    stop_when_worse
        Stop at the first candidate that scores worse than the one before (for candidates
        ordered along one penalty axis, whose score is unimodal along it).
    split
        ``inner_split(X1, p=p, random_state=random_state)`` when already computed (callers
        that select several things on the same split compute it once).

    Returns
    -------
    :class:`Selection`; ties go to the earlier candidate.
    """
    if not candidates:
        raise InputError("no candidates to select from; pass at least one parameter set")
    X1a, X1b = inner_split(X1, p=p, random_state=random_state) if split is None else split
    scores: list[tuple[dict[str, Any], float]] = []
    best, best_state, best_heldout, best_rows = 0, None, None, None
    rows = score_rows(X1a.shape[0], random_state=random_state)
    for i, params in enumerate(candidates):
        P, warm = fit_candidate(X1a, X1b, params, warm)
        score = float(poisson_deviance(P, X1b)) if X1b.nnz else 0.0
        scores.append((dict(params), score))
        if i == 0 or score < scores[best][1]:
            best, best_state, best_heldout = i, warm, heldout_values(P, X1b)
            best_rows = np.asarray(P)[rows]
        elif stop_when_worse and score > scores[i - 1][1]:
            break
    scale = max(float(X1a.sum()) / X1a.shape[0], 1.0)
    return Selection(
        best=dict(scores[best][0]),
        scores=scores,
        scale=scale,
        best_state=best_state,
        best_heldout=best_heldout,
        best_rows=best_rows,
    )


def score_rows(n_spots: int, *, random_state: int = 0) -> np.ndarray:
    """The spots whose inner-split proportions are kept whole: all of them up to
    :data:`MAX_SCORE_ROWS`, else that many drawn without replacement (sorted; the same for
    every family fitted with the same seed)."""
    if n_spots <= MAX_SCORE_ROWS:
        return np.arange(n_spots)
    rng = np.random.default_rng(int(random_state) + INNER_SEED_OFFSET)
    return np.sort(rng.choice(n_spots, MAX_SCORE_ROWS, replace=False))


def heldout_values(P: np.ndarray, X1b: sparse.csr_matrix) -> np.ndarray:
    """``P`` at the non-zero entries of ``X1b`` (CSR order)."""
    X1b = sparse.csr_matrix(X1b)
    return np.asarray(P)[_nonzero_rows(X1b), X1b.indices].astype(np.float64)


def _nonzero_rows(X: sparse.csr_matrix) -> np.ndarray:
    """Row index of every stored entry of ``X`` (CSR order)."""
    return np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))


def blend_deviance(values: Sequence[np.ndarray], weights: Sequence[float], X1b) -> float:
    """Poisson deviance per entry of ``X1b`` under the blend ``sum_k w_k P_k`` of proportion
    matrices known only at ``X1b``'s non-zeros (``values[k]`` from :func:`heldout_values`).

    The weights are convex, so every blended row sums to one and the ``mu`` terms sum to the
    total of ``X1b``: only the non-zero entries are needed.
    """
    X1b = sparse.csr_matrix(X1b, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(values),) or (w < 0).any() or not np.isclose(w.sum(), 1.0):
        raise InputError(f"blend weights {list(weights)} must be non-negative and sum to 1")
    s2 = np.asarray(X1b.sum(axis=1)).ravel()
    rows = _nonzero_rows(X1b)
    p = sum(wk * v for wk, v in zip(w, values, strict=True))
    x = X1b.data
    total = 2.0 * np.sum(x * np.log(x / (s2[rows] * np.maximum(p, 1e-300))))
    return float(total / (X1b.shape[0] * X1b.shape[1]))


# ----------------------------------------------------------------------------- rank


def _depth_normalized(X: sparse.csr_matrix, target: float) -> sparse.csr_matrix:
    """``target * x_ij / s_i``: every spot scaled to the same library size."""
    s = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target, s, out=np.zeros_like(s, dtype=np.float64), where=s > 0)
    return sparse.csr_matrix(sparse.diags(scale) @ X, dtype=np.float64)


def _centered_svd(A: sparse.csr_matrix, mu: np.ndarray, k: int, rng, n_iter: int = 4):
    """Top-``k`` SVD of ``A - 1 mu^T`` by randomized subspace iteration (Halko et al. 2011),
    with the centring kept implicit so that ``A`` stays sparse."""
    n = A.shape[0]
    ones = np.ones(n)

    def right(M):  # (A - 1 mu^T) M
        return A @ M - np.outer(ones, mu @ M)

    def left(Q):  # (A - 1 mu^T)^T Q
        return A.T @ Q - np.outer(mu, Q.sum(axis=0))

    Q, _ = np.linalg.qr(right(rng.standard_normal((A.shape[1], k + 10))))
    for _ in range(n_iter):
        Z, _ = np.linalg.qr(left(Q))
        Q, _ = np.linalg.qr(right(Z))
    small = left(Q).T
    Ub, S, Vt = np.linalg.svd(small, full_matrices=False)
    return (Q @ Ub)[:, :k], S[:k], Vt[:k]


def mcv_rank(X1a, X1b, *, max_rank: int = 40, random_state: int = 0, return_losses: bool = False):
    """Number of principal components that best predicts held-out molecules.

    Molecular cross-validation of PCA (Batson, Royer & Webber 2019): both halves are
    depth-normalised to the median library size; the rank-``k`` PCA reconstruction of
    ``X1a`` (mean + ``k`` components) is compared with ``X1b`` by mean squared error, for
    every ``k`` from 0 to ``max_rank`` at the cost of one truncated SVD (the errors have a
    closed form). The argmin is the number of components the data support above the
    sampling noise. The scale is linear (not the square root Batson et al. use for PCA), so
    that a mixture of ``K`` expression programs has exactly ``K - 1`` components: the rank
    serves the linear mixture model (:mod:`.mixture`); the square root bends mixtures and
    adds components at high depth (measured: 5 instead of 2 for 3 programs at 3,000
    molecules per spot).

    Parameters
    ----------
    X1a, X1b
        The two halves of an inner molecular split (counts, spots x genes).
    max_rank
        Largest rank tried (capped at ``min(n_spots, n_genes) - 1``).
    random_state
        Seed of the randomized SVD.
    return_losses
        Also return the error for every ``k``.
    """
    A, B = check_counts_pair(X1a, X1b)
    n, G = A.shape
    kmax = int(min(max_rank, n - 1, G - 1))
    if kmax < 1:
        return (0, np.zeros(1)) if return_losses else 0
    depth = np.asarray(A.sum(axis=1)).ravel()
    target = float(np.median(depth[depth > 0])) if (depth > 0).any() else 1.0
    A = _depth_normalized(A, target)
    B = _depth_normalized(B, target)
    mu = np.asarray(A.mean(axis=0)).ravel()
    U, S, Vt = _centered_svd(A, mu, kmax, np.random.default_rng(random_state))
    # ||mu + U_k S_k V_k^T - B||^2 = ||B - 1 mu^T||^2 - 2 sum_i s_i c_i + sum_i s_i^2, with
    # c_i = u_i^T (B - 1 mu^T) v_i
    c = np.einsum("ij,ij->j", U, B @ Vt.T) - U.sum(axis=0) * (Vt @ mu)
    losses = np.concatenate([[0.0], np.cumsum(S**2 - 2 * S * c)])
    rank = int(np.argmin(losses))
    return (rank, losses) if return_losses else rank


def check_counts_pair(X1a, X1b) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Both halves as CSR float64 of the same shape."""
    A = sparse.csr_matrix(X1a, dtype=np.float64)
    B = sparse.csr_matrix(X1b, dtype=np.float64)
    if A.shape != B.shape:
        raise InputError(
            f"the two halves have shapes {A.shape} and {B.shape}; pass the two parts of one "
            "molecular split"
        )
    return A, B
