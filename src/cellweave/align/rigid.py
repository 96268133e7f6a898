"""The rigid transform: weighted Procrustes of a plan, refined ICP-style by local re-matching.

:func:`fit_rigid` (the ``"rigid"`` solver) fits a transform to each starting plan, refines it
by rounds of local matching (:func:`refine`), and keeps the fit with the lowest local matching
cost. When the plan was computed on subsampled spots, :func:`refine_all` then refines it on
every spot with sparse candidates, coarse to fine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ..errors import InputError
from . import features
from .plan import REFINE_RADIUS, REFINE_WEIGHT, Masses, Matching, Pair, local_cost, local_plan

__all__ = ["RigidFit", "RigidOptions", "Transform", "fit_rigid", "procrustes", "refine_all"]

_LEARN_ROUNDS = 3  # structure_only: rounds of (learn a feature cost from the matches, refine)
_COARSE_WEIGHT = 0.1  # weight of the spatial cost in the coarse full-data rounds
_CHUNK_ENTRIES = 2_000_000  # candidate pairs scored at once by the full-data refinement


@dataclass(frozen=True)
class Transform:
    """``x -> scale * x @ rotation.T + translation`` (``rotation`` may include a reflection)."""

    rotation: np.ndarray
    translation: np.ndarray
    scale: float = 1.0

    def __call__(self, coords: np.ndarray) -> np.ndarray:
        return (
            self.scale * np.asarray(coords, dtype=np.float64) @ self.rotation.T + self.translation
        )

    @property
    def angle(self) -> float:
        """Rotation angle in degrees (2-D only)."""
        return float(np.degrees(np.arctan2(self.rotation[1, 0], self.rotation[0, 0])))

    @classmethod
    def identity(cls, ndim: int) -> Transform:
        """The transform that moves nothing."""
        return cls(np.eye(ndim), np.zeros(ndim))


@dataclass(frozen=True)
class RigidOptions:
    """Options of the rigid step (see ``align_sections``)."""

    refine: int = 5
    reflection: bool = False
    allow_scale: bool = False


@dataclass(frozen=True)
class RigidFit:
    """The kept rigid fit: its plan (rows b), transform, the start it came from, and the
    feature cost it was refined with (learned from the matches with ``structure_only``)."""

    plan: np.ndarray
    transform: Transform
    start: str
    M: np.ndarray | None


def procrustes(
    plan: np.ndarray,
    target: np.ndarray,
    source: np.ndarray,
    *,
    reflection: bool = False,
    scale: bool = False,
) -> Transform:
    """Weighted Procrustes: the rigid transform moving ``source`` onto ``target``.

    Minimizes ``sum_ji plan[j, i] * ||target[i] - (s R source[j] + t)||^2`` over rotations
    ``R`` (and reflections when ``reflection``), translations ``t`` and, when ``scale``, a
    scale ``s`` (Umeyama 1991).

    Parameters
    ----------
    plan
        ``(n_source, n_target)`` non-negative matching weights.
    target, source
        ``(n_target, d)`` and ``(n_source, d)`` coordinates.
    reflection
        Allow ``det(R) = -1``.
    scale
        Fit ``s``; ``1`` otherwise.
    """
    plan = plan.tocsr().astype(np.float64) if sp.issparse(plan) else np.asarray(plan, float)
    total = float(plan.sum())
    if not total > 0:
        raise InputError("the matching has no mass: no spot of one section matched the other")
    w_src = np.asarray(plan.sum(axis=1)).ravel()
    w_tgt = np.asarray(plan.sum(axis=0)).ravel()
    mu_src = w_src @ source / total
    mu_tgt = w_tgt @ target / total
    src_c, tgt_c = source - mu_src, target - mu_tgt
    H = src_c.T @ np.asarray(plan @ tgt_c)  # d x d cross-covariance
    U, S, Vt = np.linalg.svd(H)
    D = np.eye(len(S))
    if not reflection and np.linalg.det(Vt.T @ U.T) < 0:
        D[-1, -1] = -1.0
    R = Vt.T @ D @ U.T
    s = 1.0
    if scale:
        var_src = float(w_src @ (src_c**2).sum(axis=1))
        s = float(np.trace(np.diag(S) @ D) / var_src) if var_src > 0 else 1.0
    return Transform(R, mu_tgt - s * R @ mu_src, s)


def fit_rigid(pair: Pair, matching: Matching, options: RigidOptions) -> RigidFit:
    """Procrustes of each starting plan, refined by local re-matching; the fit with the lowest
    local matching cost is kept.

    On subsampled spots no refinement runs here (:func:`refine_all` refines on every spot).
    With a learned cost (``structure_only``: no feature cost ``M``) the refinement alternates
    with a feature cost learned from the matches, ``_LEARN_ROUNDS`` times.
    """
    M = matching.costs.M
    embeddings = matching.costs.embeddings
    learn = embeddings is not None
    n_iter = 0 if pair.subsampled else int(options.refine)
    rounds = _LEARN_ROUNDS if learn and options.refine and not pair.subsampled else 1
    best = None
    for name, initial in matching.plans:
        plan = initial
        transform = procrustes(
            plan, pair.pa, pair.pb, reflection=options.reflection, scale=options.allow_scale
        )
        for _ in range(rounds):
            if learn:
                M = features.learned_cost(plan, *embeddings)
            plan, transform = refine(
                plan, transform, M, pair, matching.masses, n_iter=n_iter, options=options
            )
        cost = local_cost(M, pair.pa, transform(pair.pb), plan, spacing=pair.spacing)
        if best is None or cost < best[0]:
            best = (cost, plan, transform, name)
    _, plan, transform, name = best
    return RigidFit(plan, transform, name, M)


def refine(plan, transform, M, pair: Pair, masses: Masses, *, n_iter: int, options):
    """Local re-matching around the current transform (ICP with expression).

    Each round matches the spots by exact (partial) transport on half the expression cost and
    half the squared distance after the transform, in units of ``2 spacings`` and capped at 1
    (so only nearby spots compete), then refits the transform. Stops when no spot moves by more
    than ``1e-3`` spacings.
    """
    for _ in range(n_iter):
        moved = transform(pair.pb)
        new_plan = local_plan(M, pair.pa, moved, masses, spacing=pair.spacing)
        new = procrustes(
            new_plan, pair.pa, pair.pb, reflection=options.reflection, scale=options.allow_scale
        )
        plan, shift = new_plan, float(np.abs(new(pair.pb) - moved).max())
        transform = new
        if shift < 1e-3 * pair.spacing:
            break
    return plan, transform


def refine_all(
    transform: Transform,
    pair: Pair,
    embedded: tuple[np.ndarray, np.ndarray] | None,
    *,
    m_scale: float,
    overlap: float | None,
    options: RigidOptions,
) -> tuple[sp.csr_matrix, Transform]:
    """:func:`refine` on every spot of large sections, with sparse candidates, coarse to fine.

    Each spot of b (moved by the current transform) is matched to the best of the spots of a
    within a radius, on the cost of :func:`refine` with that radius; the ``overlap`` fraction
    with the lowest costs is kept (all when ``overlap`` is None), and the transform refitted.
    The radius starts at twice the spacing of the subsample (the error a plan on subsampled
    spots can leave) and halves every round down to ``REFINE_RADIUS``; then ``refine`` rounds
    at that radius at most. Returns the sparse matching (each kept spot of b with mass
    ``1 / n_b``) and the transform.
    """
    xa, xb, spacing = pair.xa, pair.xb, pair.spacing
    tree = cKDTree(xa)
    units = None if embedded is None else (_unit_rows(embedded[0]), _unit_rows(embedded[1]))
    matching = None
    radii = _radii(pair, int(options.refine))
    for i, radius in enumerate(radii):
        moved = transform(xb)
        rows, cols, cost = _candidates(tree, moved, units, radius, spacing, m_scale)
        rows, cols, cost = _one_to_one(rows, cols, cost, len(xb), len(xa))
        keep = np.isfinite(cost)
        if overlap is not None and keep.any():
            keep &= cost <= np.quantile(cost[keep], float(overlap))
        if not keep.any():
            break
        matching = sp.csr_matrix(
            (np.full(int(keep.sum()), 1.0 / len(xb)), (rows[keep], cols[keep])),
            shape=(len(xb), len(xa)),
        )
        new = procrustes(matching, xa, xb, reflection=options.reflection, scale=options.allow_scale)
        shift = float(np.abs(new(xb) - moved).max())
        transform = new
        if radius == REFINE_RADIUS and i > 0 and shift < 1e-3 * spacing:
            break
    if matching is None:
        matching = sp.csr_matrix((len(xb), len(xa)))
    return matching, transform


def _radii(pair: Pair, n_iter: int) -> list[float]:
    """Search radii (spacings) of :func:`refine_all`: from the subsample's error, halving."""
    # the plan's spots are this far apart: its transform can be off by about as much
    ratio = max(len(pair.xa) / len(pair.ia), len(pair.xb) / len(pair.ib))
    radii = [float(2 * np.sqrt(ratio))]
    while radii[-1] / 2 > REFINE_RADIUS:
        radii.append(radii[-1] / 2)
    return radii + [REFINE_RADIUS] * max(n_iter, 1)


def _candidates(tree, moved, units, radius, spacing, m_scale):
    """Candidate pairs (b spot, a spot within ``radius`` spacings) and their costs."""
    # candidates: every spot of a in the disc (hexagonal density bounds the count)
    k = int(min(tree.n, np.ceil(1.3 * np.pi * radius**2) + 1))
    # coarse rounds lean on expression: the true partner may still be far
    weight = REFINE_WEIGHT if radius <= REFINE_RADIUS else _COARSE_WEIGHT
    distance = radius * spacing
    n = len(moved)
    rows, cols, costs = [], [], []
    step = max(1, _CHUNK_ENTRIES // max(k, 1))
    for start in range(0, n, step):
        part = slice(start, min(n, start + step))
        dist, idx = tree.query(moved[part], k=k, distance_upper_bound=distance)
        dist, idx = dist.reshape(-1, k), idx.reshape(-1, k)
        valid = idx < tree.n
        idx = np.where(valid, idx, 0)
        cost = np.minimum(dist**2 / distance**2, 1.0)
        if units is not None:
            similarity = np.einsum("nd,nkd->nk", units[1][part], units[0][idx])
            expression = np.clip(1.0 - similarity, 0.0, 2.0) / m_scale
            cost = (1 - weight) * expression + weight * cost
        r = np.broadcast_to(np.arange(start, part.stop)[:, None], idx.shape)
        rows.append(r[valid])
        cols.append(idx[valid])
        costs.append(cost[valid])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(costs)


def _one_to_one(rows, cols, cost, n_b, n_a):
    """Minimum-cost one-to-one matching on the candidate pairs (a spot of b may stay
    unmatched, at cost 1: every b spot has a private dummy partner)."""
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    ok = np.isfinite(cost)
    r = np.concatenate([rows[ok], np.arange(n_b)])
    c = np.concatenate([cols[ok], n_a + np.arange(n_b)])
    w = np.concatenate([cost[ok], np.full(n_b, 1.0)]) + 1e-9  # explicit zeros are no edges
    graph = sp.csr_matrix((w, (r, c)), shape=(n_b, n_a + n_b))
    _, partner = min_weight_full_bipartite_matching(graph)
    matched = partner < n_a
    out_cost = np.full(n_b, np.inf)
    out_cost[matched] = np.asarray(graph[np.flatnonzero(matched), partner[matched]]).ravel()
    return np.arange(n_b), np.where(matched, partner, 0), out_cost


def _unit_rows(Z: np.ndarray) -> np.ndarray:
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
