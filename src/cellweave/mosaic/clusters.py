"""Fitting the mixture prior to the latent (VaDE-style initialization) and choosing the
number of clusters.

After ``cluster_warmup`` epochs the encoder's latent already separates the cell types, but
the prior's components (random means, unit-scale variances) each still cover all of it, so
one component takes every cell and stays there (the collapse of issue 19: spread of the
latent means 0.07 against a component s.d. of 0.6). :func:`fit_components` fits a Gaussian
mixture (diagonal covariances) to the posterior means of a sample of cells and the
components are set to it, their variances widened by the mean posterior variance (the prior
is of the sampled ``z``, not of its means). With labels, class ``c`` is component ``c``
and the mixture is fitted by semi-supervised EM (:func:`semi_supervised_em`).

Without ``n_clusters`` (and without labels), :func:`choose_k` picks the number of
components on the same warm-up latent by the gap statistic (Tibshirani, Walther & Hastie
2001): ``gap(k)`` is how much lower the log within-cluster sum of squares of k-means on the
latent is than on uniform reference data (in the box of the latent's principal axes, 5
draws), and ``k`` is the smallest with ``gap(k) >= gap(k + 1) - s(k + 1)`` (``s`` the
references' standard error); the slots above ``k`` are pruned (weight 0). Measured on the
latent of the simulator (8 types) and of a 3,000-cell MOp subset (15 types, a few large):
the gap statistic chose 8 and 5-7; the Calinski-Harabasz score (the earlier criterion) and
the silhouette 8 and 2; a diagonal mixture's BIC and its 2-fold held-out likelihood 24-30
on both (they keep rising with ``k``); the agreement of k-means fitted on two halves
(stability) peaks at 2-8 (``benchmarks/results/mosaic_clusters.md``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "KMEANS_INIT",
    "K_MAX",
    "K_MIN",
    "best_kmeans_k",
    "choose_k",
    "fit_components",
    "gap_statistic",
    "semi_supervised_em",
    "uniform_references",
]

#: Fewest and most clusters :func:`choose_k` considers (``K_MAX``: the prior's slots when
#: the number of clusters is chosen).
K_MIN, K_MAX = 2, 30
#: k-means restarts on the latent (the gap statistic's and the mixture's start: one fit).
KMEANS_INIT = 3


def choose_k(
    latent: np.ndarray,
    k_max: int,
    *,
    n_references: int = 5,
    random_state: int = 0,
    centres: dict[int, np.ndarray] | None = None,
) -> int:
    """The number of clusters of ``latent`` ``(n, d)`` between :data:`K_MIN` and ``k_max``
    by the gap statistic (Tibshirani, Walther & Hastie 2001; see the module docstring):
    the smallest ``k`` with ``gap(k) >= gap(k + 1) - s(k + 1)``, else the ``k`` of the
    largest gap. ``centres``: filled with the k-means centres of ``latent`` of every ``k``
    scored (:func:`fit_components` starts from the chosen one's)."""
    x = np.asarray(latent, dtype=np.float64)
    k_max = min(int(k_max), x.shape[0] - 1)
    if k_max <= K_MIN:
        return max(min(K_MIN, int(k_max)), 1)
    references = uniform_references(x, n_references, random_state)
    gaps: dict[int, tuple[float, float]] = {}
    for k in range(K_MIN, k_max + 1):
        gaps[k] = gap_statistic(x, k, references, random_state=random_state, centres=centres)
        previous = gaps.get(k - 1)
        if previous is not None and previous[0] >= gaps[k][0] - gaps[k][1]:
            return k - 1
    return max(gaps, key=lambda k: gaps[k][0])


def gap_statistic(
    x: np.ndarray,
    k: int,
    references: list[np.ndarray],
    *,
    random_state: int = 0,
    centres: dict[int, np.ndarray] | None = None,
) -> tuple[float, float]:
    """``gap(k)`` = mean over ``references`` of ``log W_k`` minus ``log W_k`` of ``x``
    (``W_k`` the within-cluster sum of squares of k-means), and its standard error
    ``s(k)`` = the references' s.d. times ``sqrt(1 + 1 / B)``; ``centres[k]``: the
    k-means centres of ``x`` (when a dict is given)."""

    def log_w(fit) -> float:
        return float(np.log(max(fit.inertia_, 1e-300)))

    ref = np.array([log_w(_kmeans(r, k, 1, random_state)) for r in references])
    own = _kmeans(x, k, KMEANS_INIT, random_state)
    if centres is not None:
        centres[int(k)] = own.cluster_centers_
    gap = float(ref.mean() - log_w(own))
    return gap, float(ref.std() * np.sqrt(1.0 + 1.0 / len(references)))


def _kmeans(x: np.ndarray, k: int, n_init: int, random_state: int):
    """sklearn's ``KMeans`` with ``k`` clusters fitted to ``x``."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=int(k), n_init=n_init, random_state=random_state).fit(x)


def uniform_references(x: np.ndarray, n: int, random_state: int) -> list[np.ndarray]:
    """``n`` uniform samples (as many points as ``x``) in the bounding box of ``x``'s
    principal axes (the gap statistic's reference distribution, Tibshirani et al.'s (b))."""
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    rotated = centred @ vt.T
    low, high = rotated.min(0), rotated.max(0)
    rng = np.random.default_rng(random_state)
    return [rng.uniform(low, high, rotated.shape) for _ in range(int(n))]


def best_kmeans_k(x: np.ndarray, ks, score, *, n_init: int, random_state: int = 0) -> int | None:
    """The ``k`` in ``ks`` whose k-means labels of ``x`` get the highest ``score(x, labels)``
    (e.g. a sklearn cluster score); ``None`` when no ``k`` gives two clusters."""
    from sklearn.cluster import KMeans

    best, best_k = -np.inf, None
    for k in ks:
        labels = KMeans(n_clusters=int(k), n_init=n_init, random_state=random_state).fit_predict(x)
        if np.unique(labels).size < 2:
            continue
        value = score(x, labels)
        if value > best:
            best, best_k = value, int(k)
    return best_k


def fit_components(
    latent: np.ndarray,
    noise: np.ndarray,
    k: int,
    *,
    n_slots: int,
    labels: np.ndarray | None = None,
    random_state: int = 0,
    centres: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, variances ``(n_slots, d)`` and weights ``(n_slots,)`` of a diagonal Gaussian
    mixture with ``k`` components fitted to ``latent`` ``(n, d)`` (posterior means);
    ``noise`` ``(d,)`` (mean posterior variance) is added to the variances; slots above
    ``k`` get weight 0 (pruned). ``labels`` (codes, ``-1`` unlabelled): class ``c`` is
    component ``c``, fitted by semi-supervised EM (:func:`semi_supervised_em`: a labelled
    cell belongs to its class's component in every E-step). Without labels the mixture
    starts at the k-means centres of ``latent``: ``centres`` when given (those
    :func:`choose_k` fitted for ``k``, the same fit), else fitted here."""
    x = np.asarray(latent, dtype=np.float64)
    if labels is None or not (np.asarray(labels) >= 0).any():
        from sklearn.mixture import GaussianMixture

        init = centres
        if init is None:
            init = _kmeans(x, k, KMEANS_INIT, random_state).cluster_centers_
        gmm = GaussianMixture(
            k, covariance_type="diag", means_init=init, reg_covar=1e-6, random_state=random_state
        ).fit(x)
        fitted = gmm.means_, gmm.covariances_, gmm.weights_
    else:
        fitted = semi_supervised_em(x, np.asarray(labels), k, random_state=random_state)
    d = x.shape[1]
    means = np.zeros((n_slots, d))
    variances = np.tile(np.maximum(x.var(0), 1e-6) + noise, (n_slots, 1))
    weights = np.zeros(n_slots)
    means[:k], variances[:k], weights[:k] = fitted[0], fitted[1] + noise, fitted[2]
    return means.astype(np.float32), variances.astype(np.float32), weights


def semi_supervised_em(
    x: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    n_iter: int = 100,
    tol: float = 1e-4,
    reg: float = 1e-6,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means ``(k, d)``, variances ``(k, d)`` and weights ``(k,)`` of a diagonal Gaussian
    mixture fitted to ``x`` by EM in which a labelled cell (``labels`` code ``c >= 0``)
    has responsibility 1 for component ``c`` (Nigam et al. 2000); classes without a
    labelled cell start at random cells. Without the clamp (plain EM started at the class
    means) nothing ties component ``c`` to class ``c`` after the first step."""
    n = x.shape[0]
    known = labels >= 0
    onehot = np.zeros((n, k))
    onehot[np.flatnonzero(known), labels[known]] = 1.0
    rng = np.random.default_rng(random_state)
    means = x[rng.choice(n, k, replace=n < k)].copy()
    counts = onehot.sum(0)
    seen = counts > 0
    means[seen] = (onehot.T @ x)[seen] / counts[seen, None]
    variances = np.tile(x.var(0) + reg, (k, 1))
    weights = np.full(k, 1.0 / k)
    previous = -np.inf
    for _ in range(n_iter):
        log_p = np.log(weights) - 0.5 * (
            np.log(2 * np.pi * variances).sum(1)
            + (((x[:, None, :] - means) ** 2) / variances).sum(2)
        )
        top = log_p.max(1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(log_p - top).sum(1))
        resp = np.exp(log_p - log_norm[:, None])
        resp[known] = onehot[known]
        mean_ll = float(log_norm[~known].mean()) if (~known).any() else 0.0
        nk = resp.sum(0) + 1e-10
        weights = nk / n
        means = (resp.T @ x) / nk[:, None]
        variances = (resp.T @ x**2) / nk[:, None] - means**2 + reg
        variances = np.maximum(variances, reg)
        if abs(mean_ll - previous) < tol:
            break
        previous = mean_ll
    return means, variances, weights
