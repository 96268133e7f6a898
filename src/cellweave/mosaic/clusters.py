"""Fitting the mixture prior to the latent (VaDE-style initialization) and choosing the
number of clusters.

After ``cluster_warmup`` epochs the encoder's latent already separates the cell types, but
the prior's components (random means, unit-scale variances) each still cover all of it, so
one component takes every cell and stays there (the collapse of issue 19: spread of the
latent means 0.07 against a component s.d. of 0.6). :func:`fit_components` fits a Gaussian
mixture (diagonal covariances) to the posterior means of a sample of cells and the
components are set to it, their variances widened by the mean posterior variance (the prior
is of the sampled ``z``, not of its means). Labelled cells start their classes' components
at the class means.

Without ``n_clusters`` (and without labels), :func:`choose_k` picks the number of
components on the same warm-up latent: k-means for every ``k`` up to the prior's slots, and
the ``k`` of the highest Calinski-Harabasz score (between- over within-cluster dispersion,
each scaled by its degrees of freedom); the slots above ``k`` are pruned (weight 0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["K_MAX", "K_MIN", "best_kmeans_k", "choose_k", "fit_components"]

#: Fewest and most clusters :func:`choose_k` considers (``K_MAX``: the prior's slots when
#: the number of clusters is chosen).
K_MIN, K_MAX = 2, 30


def choose_k(latent: np.ndarray, k_max: int, *, random_state: int = 0) -> int:
    """The number of clusters of ``latent`` ``(n, d)`` between :data:`K_MIN` and ``k_max``
    with the highest Calinski-Harabasz score of k-means (see the module docstring)."""
    from sklearn.metrics import calinski_harabasz_score

    x = np.asarray(latent, dtype=np.float64)
    ks = range(K_MIN, min(int(k_max), x.shape[0] - 1) + 1)
    best = best_kmeans_k(x, ks, calinski_harabasz_score, n_init=3, random_state=random_state)
    return min(K_MIN, k_max) if best is None else best


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, variances ``(n_slots, d)`` and weights ``(n_slots,)`` of a diagonal Gaussian
    mixture with ``k`` components fitted to ``latent`` ``(n, d)`` (posterior means);
    ``noise`` ``(d,)`` (mean posterior variance) is added to the variances; slots above
    ``k`` get weight 0 (pruned). ``labels`` (codes, ``-1`` unlabelled): class ``c``'s
    component starts at its labelled cells' mean."""
    from sklearn.mixture import GaussianMixture

    x = np.asarray(latent, dtype=np.float64)
    rng = np.random.default_rng(random_state)
    init = x[rng.choice(x.shape[0], k, replace=x.shape[0] < k)].copy()
    if labels is None:
        from sklearn.cluster import KMeans

        init = KMeans(n_clusters=k, n_init=3, random_state=random_state).fit(x).cluster_centers_
    else:
        for c in range(k):
            rows = labels == c
            if rows.any():
                init[c] = x[rows].mean(0)
    gmm = GaussianMixture(
        k, covariance_type="diag", means_init=init, reg_covar=1e-6, random_state=random_state
    ).fit(x)
    d = x.shape[1]
    means = np.zeros((n_slots, d))
    variances = np.tile(np.maximum(x.var(0), 1e-6) + noise, (n_slots, 1))
    weights = np.zeros(n_slots)
    means[:k], weights[:k] = gmm.means_, gmm.weights_
    variances[:k] = gmm.covariances_ + noise
    return means.astype(np.float32), variances.astype(np.float32), weights
