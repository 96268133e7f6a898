"""Reference predictors and baselines for imputation, all registered in the method registry.

Every method maps training counts ``X1`` (CSR, spots x genes) and the spot coordinates to
expected proportions ``P`` (rows sum to 1, strictly positive); see
:mod:`cellweave.impute.registry` and :mod:`cellweave.impute.evaluate` for the protocol.

References (always reported): ``raw`` and ``gene_mean``. Baselines: ``knn`` (expression
space), ``spatial_knn``, ``rings``, ``diffusion`` (MAGIC-like), ``nmf`` (KL loss) and
``shrinkage`` (each spot shrunk towards the gene mean, the strength chosen from ``X1`` by an
inner molecular split; no neighbours, yet a strong yardstick on single-cell data).

Smoothers share one recipe: a non-negative weight matrix ``W`` (self included) averages the
spots' proportions (``average="proportions"``, spots without counts left out) or pools their
counts (``average="counts"``, i.e. proportions weighted by library size); the result, on the
scale of the spots' typical library size, is shrunk towards the pooled gene-mean profile by
``prior`` pseudo-molecules (a Dirichlet prior; ``prior=0`` turns it off):
``P_i = (M_i + prior * g) / (|M_i| + prior)``. Without it, a gene that none of a spot's
neighbours shows gets a proportion of ~0 and a huge deviance as soon as the held-out half
shows one molecule.

Defaults were measured with the protocol of :mod:`cellweave.impute.evaluate` (mean Poisson
deviance per entry over seeds 0-2; breast slices 1-4 averaged / MERFISH):

- ``prior=30`` for ``knn``, ``spatial_knn`` and ``rings`` (without it: 1.008 / 1.651,
  1.640 / 2.575 and 1.255 / 2.093; with it: 0.641 / 1.396, 0.765 / 1.894, 0.698 / 2.016);
  larger priors help the breast slices and hurt MERFISH;
- ``average="counts"``: pooling counts was as good as or slightly better than averaging
  proportions (rings, seed 0: 0.699 vs 0.722 and 2.015 vs 2.061);
- ``knn``: 15 neighbours (5, 10, 15, 30 tried: flat from 10 on once shrunk);
  ``spatial_knn``: 7 (the spot and 6 neighbours; 5-13 tried);
- ``diffusion``: ``n_neighbors=15``, ``ka=5``, ``t=2``, ``prior=5`` (seed 0, ``t=3``:
  0.584 / 1.478; ``t=1``: 0.848 / 1.365 without a prior; ``t=6``: 0.595 / 1.684);
- ``nmf``: rank 10, 100 iterations, ``prior=10`` (ranks 5 and 20, 50 and 200 iterations
  tried: rank 5 suits the breast slices, rank 20 MERFISH);
- ``similarity=None`` for the spatial smoothers (plain smoothing, as the issue's baselines).
  ``similarity="gaussian"`` takes rings from 0.698 / 2.016 to 0.692 / 1.622 (seeds 0-2) and,
  with ``similarity_scale=0.5``, to 0.829 / 1.113: on single cells it mostly keeps the cell
  itself, shrunk (compare ``shrinkage``: 0.586 / 1.173).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from .. import graph as _graph
from ..errors import InputError
from ..metrics.denoising import molecular_split
from .registry import check_counts, register, require_coords, to_proportions
from .similarity import Metric, expression_features, gate_by_similarity
from .spatial_loss import ring_orders

__all__ = [
    "RAW_PSEUDOCOUNT",
    "diffusion",
    "gene_mean",
    "kl_nmf",
    "knn",
    "nmf",
    "pooled_profile",
    "raw",
    "rings",
    "shrinkage",
    "shrinkage_prior",
    "smooth",
    "spatial_knn",
]

#: Pseudocount (molecules per entry) of the ``raw`` reference: tiny, so that ``raw`` is the
#: observed proportions themselves (it reproduces the issue's reference numbers).
RAW_PSEUDOCOUNT = 1e-3

Average = Literal["proportions", "counts"]

# Defaults measured with the molecular cross-validation protocol on the shared data
# (breast slices 1-4 and MERFISH, mean deviance over seeds; see the method docstrings).
_PRIOR = 30.0
#: How to do without coordinates (the end of the missing-coordinates message).
_NON_SPATIAL = "use a non-spatial method such as 'knn', 'diffusion', 'nmf' or 'gene_mean'"


# ----------------------------------------------------------------------------- shared pieces


def _library(X1: sparse.csr_matrix) -> np.ndarray:
    return np.asarray(X1.sum(axis=1)).ravel()


def pooled_profile(X1, *, pseudocount: float = RAW_PSEUDOCOUNT) -> np.ndarray:
    """Pooled gene proportions of all spots, ``(G,)``, strictly positive when
    ``pseudocount > 0``.

    ``pseudocount`` molecules are added per entry (``n_spots * pseudocount`` per gene), so
    that a gene never observed gets a small positive proportion; with one spot this is the
    ``raw`` prediction of that spot.
    """
    X1 = check_counts(X1)
    totals = np.asarray(X1.sum(axis=0)).ravel() + pseudocount * X1.shape[0]
    if totals.sum() <= 0:
        return np.full(X1.shape[1], 1.0 / X1.shape[1])
    return totals / totals.sum()


def _finish(M: np.ndarray, depth: np.ndarray, *, prior: float, profile: np.ndarray) -> np.ndarray:
    """``P_i = (M_i + prior * g) / (depth_i + prior)``; rows with nothing become ``g``."""
    if prior < 0 or not np.isfinite(prior):
        raise InputError(f"prior={prior!r} must be a non-negative number; pass e.g. prior=30")
    M = np.asarray(M, dtype=np.float64)
    empty = depth <= 0
    if prior > 0:
        M = M + prior * profile
    M[empty] = profile
    return to_proportions(M)


def _product_proportions(
    W: np.ndarray, H: np.ndarray, *, prior: float, profile: np.ndarray
) -> np.ndarray:
    """Proportions of the factorization ``W H`` (counts per spot) shrunk by ``prior``."""
    M = W @ H
    return _finish(M, M.sum(axis=1), prior=prior, profile=profile)


def smooth(
    W,
    X1,
    *,
    average: Average = "counts",
    steps: int = 1,
    prior: float = _PRIOR,
    profile: np.ndarray | None = None,
) -> np.ndarray:
    """Proportions averaged over the rows of a non-negative weight matrix, ``steps`` times.

    Parameters
    ----------
    W
        ``(n, n)`` sparse non-negative weights, self-loops included (rows need not be
        normalized: each application is divided by its total weight).
    X1
        Counts, ``(n, G)``.
    average
        ``"proportions"``: weighted mean of the spots' proportions, over spots with counts;
        ``"counts"``: weighted sum of counts (proportions weighted by library size).
    steps
        Number of applications of the row-normalized ``W`` (diffusion time).
    prior
        Pseudo-molecules of ``profile`` added to every spot (see the module docstring).
    profile
        Shrinkage target; default the pooled profile of ``X1``.

    Returns
    -------
    ``P``, ``(n, G)`` proportions.
    """
    X1 = check_counts(X1)
    W = sparse.csr_matrix(W, dtype=np.float64)
    if average not in ("proportions", "counts"):
        raise InputError(f"average={average!r} is unknown; choose 'proportions' or 'counts'")
    profile = pooled_profile(X1) if profile is None else profile
    s = _library(X1)
    has = (s > 0).astype(np.float64)
    if average == "proportions":
        F = X1.multiply(np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)[:, None]).toarray()
    else:
        F = X1.toarray()
    degree = np.asarray(W.sum(axis=1)).ravel()
    op = sparse.diags(np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)) @ W
    op = sparse.csr_matrix(op)
    mass, depth = has, s
    for _ in range(steps):
        F, mass, depth = op @ F, op @ mass, op @ depth
    # mean over the spots with counts that the walk reached, on their mean library scale
    seen = mass > 0
    inv_mass = np.divide(1.0, mass, out=np.zeros_like(mass), where=seen)
    if average == "proportions":
        mean_depth = depth * inv_mass
        M = F * (inv_mass * mean_depth)[:, None]
    else:
        M, mean_depth = F, np.asarray(F.sum(axis=1)).ravel()
    return _finish(M, np.where(seen, mean_depth, 0.0), prior=prior, profile=profile)


def _check_k(k, *, name: str = "n_neighbors") -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"{name}={k!r} must be a positive integer; pass e.g. {name}=15")
    return int(k)


# ----------------------------------------------------------------------------- references


@register(
    "raw",
    kind="reference",
    spatial=False,
    description="observed proportions of X1 (pseudocount 1e-3 per entry)",
)
def raw(X1, *, coords=None, random_state: int = 0, pseudocount: float = RAW_PSEUDOCOUNT):
    """Each spot's own proportions, ``(X1 + c) / (s + c G)`` with ``c = 1e-3`` molecules per
    entry; spots without counts get the pooled profile."""
    X1 = check_counts(X1)
    if not (np.isfinite(pseudocount) and pseudocount > 0):
        raise InputError(f"pseudocount={pseudocount!r} must be positive; pass e.g. 1e-3")
    s = _library(X1)
    M = X1.toarray() + pseudocount
    M[s <= 0] = pooled_profile(X1, pseudocount=pseudocount)
    return to_proportions(M)


@register(
    "gene_mean",
    kind="reference",
    spatial=False,
    description="one profile for all spots: pooled proportions of X1",
)
def gene_mean(X1, *, coords=None, random_state: int = 0, pseudocount: float = RAW_PSEUDOCOUNT):
    """The pooled profile (:func:`pooled_profile`) for every spot."""
    X1 = check_counts(X1)
    profile = pooled_profile(X1, pseudocount=pseudocount)
    return to_proportions(np.broadcast_to(profile, X1.shape))


def shrinkage_prior(X1, *, grid: Sequence[float] | None = None, random_state: int = 0) -> float:
    """Prior strength (pseudo-molecules of the pooled profile) chosen from ``X1`` alone by an
    inner molecular split: fit ``(x + a g) / (s + a)`` on ``Binomial(X1, 0.5)``, score the
    Poisson deviance on the rest, keep the best ``a`` of ``grid`` (``inf``: the gene mean).

    In a Dirichlet-multinomial model the best ``a`` does not depend on the depth, so the
    value found on the half transfers to ``X1``.
    """
    X1 = check_counts(X1)
    grid = _SHRINK_GRID if grid is None else tuple(float(a) for a in grid)
    if not grid or any(not a > 0 for a in grid):
        raise InputError(f"grid={grid!r} must hold positive prior strengths; pass e.g. (10, 100)")
    A, B = molecular_split(X1, random_state=random_state)
    if B.sum() <= 0:
        return float(grid[-1])
    scores = _shrinkage_deviances(A, B, grid)
    return float(grid[int(np.argmin(scores))])


def _shrinkage_deviances(A: sparse.csr_matrix, B: sparse.csr_matrix, grid) -> np.ndarray:
    """Total Poisson deviance on ``B`` of ``(A_i + a g) / (s_i + a)`` for every ``a`` in
    ``grid``, in O(nnz): with rows summing to 1 the ``mu - x`` terms cancel, so only the
    non-zeros of ``B`` count."""
    B = sparse.csr_matrix(B)
    B.eliminate_zeros()
    B.sort_indices()
    mask = B.copy()
    mask.data[:] = 1.0
    # A on the pattern of B, aligned with B.data (1 + A never cancels to an implicit zero)
    aligned = sparse.csr_matrix(mask + A.multiply(mask))
    aligned.sort_indices()
    a_vals = aligned.data - 1.0
    rows = np.repeat(np.arange(B.shape[0]), np.diff(B.indptr))
    g = pooled_profile(A)[B.indices]
    s = _library(A)[rows]
    b_tot = _library(B)[rows]
    x = B.data
    out = []
    for a in grid:
        if np.isinf(a):
            p = g
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                p = np.where(s + a > 0, (a_vals + a * g) / (s + a), g)
        out.append(2.0 * np.sum(x * np.log(x / (b_tot * np.maximum(p, 1e-300)))))
    return np.asarray(out)


_SHRINK_GRID = (*np.geomspace(3.0, 3000.0, 13).round(1).tolist(), np.inf)


@register(
    "shrinkage",
    kind="baseline",
    spatial=False,
    description="each spot's counts shrunk towards the gene mean (strength from an inner split)",
)
def shrinkage(X1, *, coords=None, random_state: int = 0, prior: float | None = None):
    """Empirical-Bayes blend of ``raw`` and ``gene_mean``: ``P_i = (x_i + a g) / (s_i + a)``
    with ``a`` from :func:`shrinkage_prior` (or ``prior``); no neighbours at all."""
    X1 = check_counts(X1)
    a = shrinkage_prior(X1, random_state=random_state) if prior is None else float(prior)
    if np.isinf(a):
        return gene_mean(X1)
    return smooth(sparse.eye(X1.shape[0], format="csr"), X1, prior=a)


# ----------------------------------------------------------------------------- expression kNN


def _knn_indices(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances to and indices of the ``k`` nearest spots of every spot (the spot
    itself among them unless duplicates tie with it); ``k`` is capped at the number of
    spots. A k-d tree for coordinates, brute force (or a tree for many spots) for features."""
    n = features.shape[0]
    k = min(k, n)
    if features.shape[1] <= 3:
        dist, idx = cKDTree(features).query(features, k=k)
        return dist.reshape(n, k), idx.reshape(n, k)
    algorithm = "brute" if n < 5000 else "auto"
    nn = NearestNeighbors(n_neighbors=k, algorithm=algorithm).fit(features)
    return nn.kneighbors(features)


def _unit_rows(features: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(features, axis=1, keepdims=True)
    return np.divide(features, norm, out=np.zeros_like(features), where=norm > 0)


def _self_included(idx: np.ndarray, weights: np.ndarray, n: int) -> sparse.csr_matrix:
    """Sparse weights from neighbour lists, with the spot itself forced in (weight 1)."""
    rows = np.repeat(np.arange(n), idx.shape[1])
    W = sparse.csr_matrix((weights.ravel(), (rows, idx.ravel())), shape=(n, n))
    return sparse.csr_matrix(W + sparse.diags(np.maximum(1.0 - W.diagonal(), 0.0)))


def _expression_space(X1, n_comps, random_state):
    X1 = check_counts(X1)
    has = _library(X1) > 0
    features = np.zeros((X1.shape[0], 1))
    if has.sum() >= 1:
        sub = expression_features(X1[has], n_comps=n_comps, random_state=random_state)
        features = np.zeros((X1.shape[0], sub.shape[1]))
        features[has] = sub
    return X1, has, features


def _expand(W_sub: sparse.csr_matrix, has: np.ndarray) -> sparse.csr_matrix:
    """Weights among the spots with counts, placed in the full matrix (others get only
    themselves, i.e. the pooled profile after :func:`smooth`)."""
    n = has.size
    pos = np.flatnonzero(has)
    coo = W_sub.tocoo()
    W = sparse.csr_matrix((coo.data, (pos[coo.row], pos[coo.col])), shape=(n, n))
    return W


@register(
    "knn",
    kind="baseline",
    spatial=False,
    description="mean over the k nearest spots in expression space (PCA, cosine, self included)",
)
def knn(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    n_neighbors: int = 15,
    n_comps: int = 30,
    average: Average = "counts",
    prior: float = _PRIOR,
):
    """Average over the ``n_neighbors`` nearest spots (self included) by cosine distance of
    the principal components of log-normalized counts. Spots without counts get the pooled
    profile."""
    k = _check_k(n_neighbors)
    X1, has, features = _expression_space(X1, n_comps, random_state)
    if not has.any():
        return gene_mean(X1)
    Z = _unit_rows(features[has])  # Euclidean on unit vectors ranks like cosine
    _, idx = _knn_indices(Z, k)
    W = _expand(_self_included(idx, np.ones(idx.shape), Z.shape[0]), has)
    return smooth(W, X1, average=average, prior=prior)


# ----------------------------------------------------------------------------- diffusion


def _magic_operator(features: np.ndarray, k: int, ka: int) -> sparse.csr_matrix:
    """Symmetrized adaptive Gaussian kernel on the kNN graph (self included):
    ``K_ij = exp(-(d_ij / sigma_i)^2)`` with ``sigma_i`` the distance to the ``ka``-th
    neighbour, ``K <- (K + K^T) / 2``."""
    n = features.shape[0]
    dist, idx = _knn_indices(features, k + 1)
    ka = min(ka, dist.shape[1] - 1)
    sigma = dist[:, ka] if ka >= 1 else np.ones(n)
    positive = sigma[sigma > 0]
    sigma = np.where(sigma > 0, sigma, positive.min() if positive.size else 1.0)
    K = _self_included(idx, np.exp(-((dist / sigma[:, None]) ** 2)), n)
    return sparse.csr_matrix((K + K.T) / 2.0)


@register(
    "diffusion",
    kind="baseline",
    spatial=False,
    description="MAGIC-like diffusion of proportions over the expression kNN graph",
)
def diffusion(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    n_neighbors: int = 15,
    ka: int = 5,
    t: int = 2,
    n_comps: int = 30,
    average: Average = "counts",
    prior: float = 5.0,
):
    """MAGIC-like diffusion (van Dijk et al. 2018) of proportions: a Markov matrix from an
    adaptive Gaussian kernel on the PCA of log-normalized counts (``n_neighbors`` nearest
    spots, bandwidth the distance to the ``ka``-th), applied ``t`` times."""
    k = _check_k(n_neighbors)
    t = _check_k(t, name="t")
    ka = _check_k(ka, name="ka")
    X1, has, features = _expression_space(X1, n_comps, random_state)
    if not has.any():
        return gene_mean(X1)
    W = _expand(_magic_operator(features[has], k, ka), has)
    return smooth(W, X1, average=average, steps=t, prior=prior)


# ----------------------------------------------------------------------------- spatial


@register(
    "spatial_knn",
    kind="baseline",
    spatial=True,
    description="mean over the k spatially nearest spots (self included)",
)
def spatial_knn(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    n_neighbors: int = 7,
    average: Average = "counts",
    prior: float = _PRIOR,
    similarity: Metric | None = None,
    similarity_scale: float = 1.0,
    similarity_threshold: float = 0.0,
    similarity_features: np.ndarray | None = None,
    n_comps: int = 30,
):
    """Average over the ``n_neighbors`` spatially nearest spots, the spot itself included.
    ``similarity`` (``"gaussian"`` or ``"correlation"``)
    down-weights neighbours whose expression differs (see
    :func:`~cellweave.impute.similarity.similarity_weights`)."""
    X1 = check_counts(X1)
    coords = require_coords(coords, n_obs=X1.shape[0], method="spatial_knn", fix=_NON_SPATIAL)
    k = _check_k(n_neighbors)
    _, idx = _knn_indices(coords, k)
    W = _self_included(idx, np.ones(idx.shape), X1.shape[0])
    W = gate_by_similarity(
        W,
        X1,
        metric=similarity,
        scale=similarity_scale,
        threshold=similarity_threshold,
        n_comps=n_comps,
        random_state=random_state,
        features=similarity_features,
    )
    return smooth(W, X1, average=average, prior=prior)


@register(
    "rings",
    kind="baseline",
    spatial=True,
    description="order-weighted ring smoothing (self 1, order 1 weight 1, order 2 weight 0.5)",
)
def rings(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    weights: Sequence[float] = (1.0, 0.5),
    self_weight: float = 1.0,
    graph: str = "auto",
    n_neighbors: int = 6,
    average: Average = "counts",
    prior: float = _PRIOR,
    similarity: Metric | None = None,
    similarity_scale: float = 1.0,
    similarity_threshold: float = 0.0,
    similarity_features: np.ndarray | None = None,
    n_comps: int = 30,
):
    """Weighted mean of the spot (``self_weight``) and its neighbour rings (ring ``k``
    weighs ``weights[k-1]``), rings from :func:`cellweave.graph.neighbor_rings` (lattice
    rings on ST/Visium grids, hop rings of a ``n_neighbors``-NN graph elsewhere; ``graph``
    is its ``method``). ``similarity`` as in :func:`spatial_knn`."""
    X1 = check_counts(X1)
    coords = require_coords(coords, n_obs=X1.shape[0], method="rings", fix=_NON_SPATIAL)
    if not (np.isfinite(self_weight) and self_weight >= 0):
        raise InputError(f"self_weight={self_weight!r} must be non-negative; pass e.g. 1.0")
    order = ring_orders(
        coords, max_order=len(weights), n_neighbors=_check_k(n_neighbors), method=graph
    )
    W = _graph.ring_weights(order, weights=weights, normalize=None)
    W = sparse.csr_matrix(W + self_weight * sparse.eye(X1.shape[0], format="csr"))
    W = gate_by_similarity(
        W,
        X1,
        metric=similarity,
        scale=similarity_scale,
        threshold=similarity_threshold,
        n_comps=n_comps,
        random_state=random_state,
        features=similarity_features,
    )
    return smooth(W, X1, average=average, prior=prior)


# ----------------------------------------------------------------------------- NMF


def _row_blocks(n: int, n_cols: int, max_entries: int = 2**24) -> list[slice]:
    step = max(1, max_entries // max(n_cols, 1))
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


def kl_nmf(
    X,
    *,
    rank: int = 10,
    max_iter: int = 100,
    random_state: int = 0,
    dtype=np.float32,
    track_loss: bool = False,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Non-negative factorization ``X ~ W H`` minimizing the generalized KL divergence
    (Poisson likelihood) by the multiplicative updates of Lee & Seung (as scikit-learn's
    ``NMF(beta_loss="kullback-leibler", solver="mu")``, written out here in row blocks of
    dense ``float32`` so that it takes seconds, not a minute, on 4,000 x 2,000).

    The start is the gene-mean model with multiplicative noise: ``W_ik = s_i / rank * u``,
    ``H_kj = g_j * v`` with ``u, v ~ U(0.5, 1.5)``; ``init=(W, H)`` starts from given
    factors instead (a warm start).

    Returns
    -------
    ``W`` ``(n, rank)``, ``H`` ``(rank, G)`` and the KL divergence after each iteration
    (empty unless ``track_loss``).
    """
    rng = np.random.default_rng(random_state)
    X = check_counts(X)
    n, G = X.shape
    rank = _check_k(rank, name="rank")
    s = _library(X)
    g = np.asarray(X.sum(axis=0)).ravel()
    g = g / g.sum() if g.sum() > 0 else np.full(G, 1.0 / G)
    if init is not None:
        W, H = (np.array(f, dtype=dtype) for f in init)
        if W.shape != (n, rank) or H.shape != (rank, G):
            raise InputError(
                f"init factors of shapes {W.shape} and {H.shape} do not fit a rank-{rank} "
                f"factorization of {n} x {G}; pass W (n, rank) and H (rank, genes)"
            )
    else:
        W = (s[:, None] / rank * rng.uniform(0.5, 1.5, (n, rank))).astype(dtype)
        H = (g[None, :] * rng.uniform(0.5, 1.5, (rank, G))).astype(dtype)
    blocks = _row_blocks(n, G)
    cached = [X[b].toarray().astype(dtype) for b in blocks] if n * G <= 2**26 else None

    def block(i: int) -> np.ndarray:
        return cached[i] if cached is not None else X[blocks[i]].toarray().astype(dtype)

    history: list[float] = []
    # One BLAS thread: the products are skinny (rank columns) and memory-bound; measured
    # 3.3 s single-threaded on 4,000 x 2,000 against 2.5-12 s with 2 threads on a busy machine
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(max_iter):
            loss = _mu_step(W, H, blocks, block, track_loss)
            if track_loss:
                history.append(loss)
    return W.astype(np.float64), H.astype(np.float64), history


def _ratio(Xb: np.ndarray, Wb: np.ndarray, H: np.ndarray) -> np.ndarray:
    """``Xb / (Wb H)`` (the product floored at 1e-12)."""
    R = Wb @ H
    np.maximum(R, 1e-12, out=R)
    return np.divide(Xb, R, out=R)


def _mu_step(W, H, blocks, block, track_loss: bool) -> float:
    """One KL multiplicative update of ``H``, then of ``W`` (both in place); returns the
    divergence after it when ``track_loss`` (else 0)."""
    num = np.zeros_like(H)
    for i, b in enumerate(blocks):
        num += W[b].T @ _ratio(block(i), W[b], H)
    H *= num / np.maximum(W.sum(axis=0), 1e-12)[:, None]
    hsum = np.maximum(H.sum(axis=1), 1e-12)[None, :]
    loss = 0.0
    for i, b in enumerate(blocks):
        Xb = block(i)
        W[b] *= (_ratio(Xb, W[b], H) @ H.T) / hsum
        if track_loss:
            loss += _kl(Xb, W[b] @ H)
    return loss


def _kl(X: np.ndarray, M: np.ndarray) -> float:
    """Generalized KL divergence ``sum x log(x / m) - x + m``."""
    nz = X > 0
    return float(
        np.sum(X[nz] * np.log(X[nz] / np.maximum(M[nz], 1e-12)), dtype=np.float64)
        - X.sum(dtype=np.float64)
        + M.sum(dtype=np.float64)
    )


@register(
    "nmf",
    kind="baseline",
    spatial=False,
    description="non-negative matrix factorization with KL (Poisson) loss",
)
def nmf(
    X1,
    *,
    coords=None,
    random_state: int = 0,
    rank: int = 10,
    max_iter: int = 100,
    prior: float = 10.0,
):
    """Rank-``rank`` KL-NMF of ``X1`` (:func:`kl_nmf`); the reconstruction ``W H`` (on the
    count scale of each spot) is shrunk by ``prior`` as the smoothers are and turned into
    proportions. Spots without counts get the pooled profile."""
    X1 = check_counts(X1)
    W, H, _ = kl_nmf(
        X1, rank=rank, max_iter=_check_k(max_iter, name="max_iter"), random_state=random_state
    )
    return _product_proportions(W, H, prior=prior, profile=pooled_profile(X1))
