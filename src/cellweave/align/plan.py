"""The matching between the spots of two sections: fused Gromov-Wasserstein starting plans and
the local (exact, partial) re-matching the transforms refine with.

The two matching solvers of the registry (:mod:`cellweave.align.solvers`):

- :func:`match_features` (``"fgw"``): FGW over a feature cost (shared genes or feature pairs,
  :func:`~cellweave.align.features.feature_cost`) and the sections' geometry, as in PASTE
  (Zeira et al. 2022). Partial by default (a fraction ``overlap`` of the spots matched), with
  the balanced plan as a second start when the whole data are used.
- :func:`match_structure` (``"structure"``): pure Gromov-Wasserstein over each section's own
  structure (``structure_only``), several rotated starts.

This module is the only one of :mod:`cellweave.align` that imports the transport numerics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from anndata import AnnData
from scipy.spatial.distance import cdist

from ..ot import MAX_ENTRIES, check_fgw_size, exact_transport, fused_gromov_wasserstein
from . import features
from .features import ExpressionSpace, FeatureOptions

__all__ = [
    "Costs",
    "Masses",
    "MatchOptions",
    "Matching",
    "Pair",
    "exact_transport",
    "local_cost",
    "local_plan",
    "match_features",
    "match_structure",
    "sparse_matching",
]

REFINE_RADIUS = 2.0  # spacings: where the local matching's spatial cost saturates
REFINE_WEIGHT = 0.5  # weight of that spatial cost against the expression cost
_SCREEN_ITER = 10  # FGW iterations of each start when several are screened


@dataclass(frozen=True)
class Pair:
    """The two sections' coordinates and the spots the plan is computed on.

    Attributes
    ----------
    xa, xb
        Coordinates of every spot of section a (reference) and section b (moving).
    ia, ib
        Indices of the spots the plan uses (all, or a seeded subsample of ``max_spots``).
    pa, pb
        Their coordinates.
    spacing
        Spot spacing of section a (median nearest-neighbour distance).
    """

    xa: np.ndarray
    xb: np.ndarray
    ia: np.ndarray
    ib: np.ndarray
    pa: np.ndarray
    pb: np.ndarray
    spacing: float

    @classmethod
    def sample(cls, xa: np.ndarray, xb: np.ndarray, *, max_spots: int, rng) -> Pair:
        """Subsample (seeded) each section to ``max_spots``; refuse a plan too large to build."""
        ia = _subsample(len(xa), max_spots, rng)
        ib = _subsample(len(xb), max_spots, rng)
        check_fgw_size(len(ia), len(ib))  # before any n x n matrix is built
        return cls(xa, xb, ia, ib, xa[ia], xb[ib], features.spacing(xa))

    @property
    def subsampled(self) -> bool:
        """Whether the plan uses fewer spots than the sections have."""
        return len(self.ia) < len(self.xa) or len(self.ib) < len(self.xb)


def _subsample(n: int, max_spots: int, rng: np.random.Generator) -> np.ndarray:
    if n <= max_spots:
        return np.arange(n)
    return np.sort(rng.choice(n, int(max_spots), replace=False))


@dataclass(frozen=True)
class Masses:
    """Spot masses of the two sections and the transported mass (``None``: balanced)."""

    a: np.ndarray
    b: np.ndarray
    mass: float | None

    @classmethod
    def of(cls, n_a: int, n_b: int, overlap: float | None) -> Masses:
        """Equal mass per spot and ``overlap`` of the smaller section moved (partial), or
        uniform masses on each side (balanced, ``overlap=None``)."""
        if overlap is None:
            return cls(np.full(n_a, 1.0 / n_a), np.full(n_b, 1.0 / n_b), None)
        n = max(n_a, n_b)
        return cls(np.full(n_a, 1.0 / n), np.full(n_b, 1.0 / n), float(overlap) * min(n_a, n_b) / n)


@dataclass(frozen=True)
class MatchOptions:
    """Options of the matching step (see ``align_sections``)."""

    alpha: float = 0.1
    overlap: float | None = 0.7
    epsilon: float | None = None
    n_init: int = 1
    reflection: bool = False
    allow_scale: bool = False
    device: str = "auto"
    balanced_start: bool = True  # also try the balanced plan (partial, full data, refined)
    features: FeatureOptions = field(default_factory=FeatureOptions)


@dataclass(frozen=True)
class Costs:
    """The costs the plan was computed on.

    ``M``: feature cost between the plan's spots (``None`` with ``structure_only``), ``scale``:
    what ``M`` was divided by, ``space``: the expression space embedding every spot (``None``
    with ``structure_only``), ``embeddings``: each section's own embedding (``structure_only``).
    """

    M: np.ndarray | None
    scale: float = 1.0
    space: ExpressionSpace | None = None
    embeddings: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class Matching:
    """A matching solver's result: costs, spot masses and the starting plans (rows b)."""

    costs: Costs
    masses: Masses
    plans: tuple[tuple[str, np.ndarray], ...]  # (start name, n_b x n_a plan)


def match_features(
    pair: Pair, sub_a: AnnData, sub_b: AnnData, options: MatchOptions, *, seed: int
) -> Matching:
    """FGW over the feature cost and the geometry: the partial plan and, when the whole data
    are used and the fit is refined, the balanced plan as a second start."""
    M, scale, space = features.feature_cost(sub_a, sub_b, options.features, seed=seed)
    C1, C2 = features.geometry(pair.pa, pair.pb, allow_scale=options.allow_scale)
    n_a, n_b = len(pair.ia), len(pair.ib)
    masses = Masses.of(n_a, n_b, options.overlap)
    starts = [("balanced" if masses.mass is None else "partial", masses)]
    if masses.mass is not None and options.balanced_start and not pair.subsampled:
        starts.append(("balanced", Masses.of(n_a, n_b, None)))
    plans = tuple(
        (name, best_plan(M, C1, C2, pair, w, options, alpha=options.alpha, seed=seed))
        for name, w in starts
    )
    return Matching(Costs(M, scale, space), masses, plans)


def match_structure(
    pair: Pair, sub_a: AnnData, sub_b: AnnData, options: MatchOptions, *, seed: int
) -> Matching:
    """Pure Gromov-Wasserstein over each section's own structure (no feature compared)."""
    C1, C2, embeddings = features.structure_matrices(
        sub_a,
        sub_b,
        pair.pa,
        pair.pb,
        layer=options.features.layer,
        n_pcs=options.features.n_pcs,
        seed=seed,
        allow_scale=options.allow_scale,
    )
    masses = Masses.of(len(pair.ia), len(pair.ib), options.overlap)
    plan = best_plan(None, C1, C2, pair, masses, options, alpha=1.0, seed=seed)
    name = "balanced" if masses.mass is None else "partial"
    return Matching(Costs(None, embeddings=tuple(embeddings)), masses, ((name, plan),))


def best_plan(
    M, C1, C2, pair: Pair, masses: Masses, options: MatchOptions, *, alpha: float, seed: int
) -> np.ndarray:
    """The FGW plan (rows: spots of b) with the lowest objective over ``n_init`` starts.

    Beyond the product plan, 2-D starts are the matchings of b rotated by evenly spaced angles
    (mirrored too with ``reflection``), screened for a few iterations, the best one finished;
    3-D starts are random (inside the solver).
    """
    pa, pb, a, b = pair.pa, pair.pb, masses.a, masses.b
    n_init = options.n_init
    starts: list[np.ndarray | None] = [None]
    if n_init > 1 and pa.shape[1] == 2:
        starts += rotated_starts(pa, pb, masses, n_init - 1, reflection=options.reflection)
    screen = _SCREEN_ITER if len(starts) > 1 else None  # screen starts briefly, finish the best
    solve = functools.partial(
        fused_gromov_wasserstein,
        M,
        C1,
        C2,
        alpha=alpha,
        epsilon=options.epsilon,
        a=a,
        b=b,
        mass=masses.mass,
        device=options.device,
        max_entries=MAX_ENTRIES,
    )
    best = None
    for start in starts:
        extra = n_init if (start is None and pa.shape[1] != 2) else 1
        plan, log = solve(
            G0=start, n_init=extra, random_state=seed, return_log=True, max_iter=screen or 1000
        )
        if best is None or log.objective < best[1].objective:
            best = (plan, log)
    if screen is not None and not best[1].converged:
        return solve(G0=best[0]).T
    return best[0].T


def rotated_starts(pa, pb, masses: Masses, n: int, *, reflection: bool) -> list[np.ndarray]:
    """Transport plans (rows a) matching ``pb`` rotated by ``n`` evenly spaced angles onto
    ``pa`` (each angle mirrored too when ``reflection``)."""
    a, b = masses.a, masses.b
    ca = pa - a @ pa / a.sum()
    cb = pb - b @ pb / b.sum()
    mirrors = (1.0, -1.0) if reflection else (1.0,)
    n_angles = max(1, int(np.ceil(n / len(mirrors))))
    starts = []
    for k in range(n_angles):
        theta = 2 * np.pi * (k + 1) / (n_angles + 1)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        for mirror in mirrors:
            moved = (cb * np.array([1.0, mirror])) @ rot.T
            cost = cdist(ca, moved, "sqeuclidean")
            starts.append(exact_transport(cost, a, b, mass=masses.mass))
    return starts[:n]


# --------------------------------------------------------------------------------------------
# local matching (the refinements' step)
# --------------------------------------------------------------------------------------------
def match_cost(M, pa, moved, *, spacing) -> np.ndarray:
    """``(n_a, n_b)`` cost of the local matching: half the expression cost ``M`` and half the
    squared distance in units of ``REFINE_RADIUS`` spacings, capped at 1."""
    near = np.minimum(cdist(pa, moved, "sqeuclidean") / (REFINE_RADIUS * spacing) ** 2, 1.0)
    return near if M is None else (1 - REFINE_WEIGHT) * M + REFINE_WEIGHT * near


def local_plan(M, pa, moved, masses: Masses, *, spacing) -> np.ndarray:
    """Exact (partial) plan on :func:`match_cost`, rows ``moved`` (b)."""
    cost = match_cost(M, pa, moved, spacing=spacing)
    return exact_transport(cost, masses.a, masses.b, mass=masses.mass).T


def local_cost(M, pa, moved, plan, *, spacing) -> float:
    """Mean cost of :func:`local_plan`'s objective under ``plan`` (rows b)."""
    cost = match_cost(M, pa, moved, spacing=spacing).T
    return float((cost * plan).sum() / max(plan.sum(), 1e-300))


def sparse_matching(plan_ba: np.ndarray, pair: Pair) -> sp.csr_matrix:
    """The plan as a sparse ``n_b x n_a`` matrix over all spots (tiny entries dropped)."""
    plan = np.where(plan_ba > 1e-8 * plan_ba.max(), plan_ba, 0.0)
    rows, cols = np.nonzero(plan)
    shape = (len(pair.xb), len(pair.xa))
    return sp.csr_matrix((plan[rows, cols], (pair.ib[rows], pair.ia[cols])), shape=shape)
