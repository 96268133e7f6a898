"""Align two spatial sections (or two modalities of one tissue) onto a common frame.

The matching is a fused Gromov-Wasserstein plan (:func:`~cellweave.ot.
fused_gromov_wasserstein`) between the spots of the two sections, fusing an expression cost
(shared genes, or paired features, in a joint PCA) with the sections' own geometry (pairwise
distances), as in PASTE (Zeira et al. 2022). By default the plan is *partial*: only a fraction
``overlap`` of the spots must find a counterpart, so spots missing from one section (other
tissue extent, dropped spots) do not drag the others. A weighted Procrustes fit of the plan
gives the rigid transform (rotation and translation; reflection and scale optional), and an
optional smooth displacement field (Gaussian-kernel ridge regression of the residual
matches) gives a non-rigid refinement.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from .._utils import RandomState, check_random_state
from ..errors import InputError, NoSharedFeaturesError
from ..ot import MAX_ENTRIES, check_fgw_size, exact_transport, fused_gromov_wasserstein
from ..validate import check_adata, check_spatial, get_matrix, is_counts, shared_features

__all__ = [
    "Transform",
    "align_sections",
    "apply_transform",
    "perturb_section",
    "procrustes",
]

_UNS_KEY = "alignment"
_MIN_SHARED = 5
_CHUNK = 5000  # spots embedded at once
_COARSE_WEIGHT = 0.1  # weight of the spatial cost in the coarse full-data rounds
_CHUNK_ENTRIES = 2_000_000  # candidate pairs scored at once by the full-data refinement
_REFINE_RADIUS = 2.0  # spacings: the distance at which the refinement's spatial cost saturates
_REFINE_WEIGHT = 0.5  # weight of that spatial cost against the expression cost
_NONRIGID_ROUNDS = 10  # non-rigid ICP rounds at most
_N_CENTRES = 600  # kernel centres of the displacement field at most
_LEARN_ROUNDS = 3  # structure_only: rounds of (learn a feature cost from the matches, refine)


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


def align_sections(
    adata_a: AnnData,
    adata_b: AnnData,
    *,
    spatial_key: str = "spatial",
    alpha: float = 0.1,
    rigid: bool = True,
    nonrigid: bool = False,
    genes: Sequence[str] | None = None,
    feature_pairs: Mapping[str, str] | pd.Series | None = None,
    structure_only: bool = False,
    layer: str | None = None,
    overlap: float | None = 0.7,
    refine: int = 5,
    reflection: bool = False,
    allow_scale: bool = False,
    n_pcs: int = 30,
    n_top_genes: int = 2000,
    epsilon: float | None = None,
    max_spots: int = 2000,
    n_init: int | None = None,
    nonrigid_bandwidth: float = 3.0,
    nonrigid_smoothness: float = 0.1,
    random_state: RandomState = 0,
    device: str = "auto",
    key_added: str = "spatial_aligned",
    copy: bool = False,
) -> tuple[AnnData, AnnData] | None:
    """Align section ``adata_b`` onto section ``adata_a`` (fused Gromov-Wasserstein + Procrustes).

    Parameters
    ----------
    adata_a
        Reference section; its coordinates define the common frame.
    adata_b
        Section to move onto ``adata_a``. Spot numbers may differ.
    spatial_key
        Key of the coordinates in ``obsm`` of both (2-D or 3-D, the same in both).
    alpha
        Weight of geometry (pairwise distances) against expression in the FGW plan, in [0, 1].
    rigid
        Fit a rigid transform from the plan. With ``rigid=False`` (and ``nonrigid=True``) the
        displacement field is fitted to the raw coordinates.
    nonrigid
        Refine with a smooth displacement field (Gaussian kernel ridge regression of the
        residual matches).
    genes
        Features to compare (default: all shared ``var_names``, the ``n_top_genes`` most
        variable kept).
    feature_pairs
        For two modalities whose feature names differ (e.g. RNA vs protein): a mapping from
        feature names of ``adata_a`` to those of ``adata_b`` (dict or Series). Each section's
        features are then standardized separately before the joint PCA.
    structure_only
        Compare no features across the sections (modality-agnostic): each section's structure
        matrix fuses its spatial distances with the ranks of its own expression
        dissimilarities, and the plan is pure Gromov-Wasserstein over these.
    layer
        Read expression from this layer of both sections instead of ``X``. Raw counts are
        log-normalized; other values are used as they are.
    overlap
        Fraction of the smaller section's spots expected to have a counterpart: the partial
        FGW plan and the refinement move this much mass (every spot carries the same mass).
        The balanced FGW plan is tried as a second start, and the refined fit with the lower
        local matching cost kept (``uns["alignment"]["fgw_start"]``). ``None``: balanced
        throughout (every spot of both sections matched).
    refine
        Rounds of local re-matching after the rigid fit (exact transport on expression plus
        distance after the transform, then Procrustes again; ICP-like); 0 to skip.
    reflection
        Allow a mirror image (a section mounted upside down).
    allow_scale
        Also fit a scale factor (coordinates in different units); the structure matrices are
        then normalized per section.
    n_pcs
        Principal components of the joint expression space.
    n_top_genes
        Keep at most this many features (the most variable in the two sections together).
    epsilon
        ``None``: exact FGW (sparse plan). ``> 0``: entropic FGW with this regularization (in
        units of the costs, which are scaled to at most 1), faster on a GPU for large sections.
    max_spots
        Sections with more spots are subsampled (seeded) to this many for the plan; the
        transform is applied to every spot.
    n_init
        Starting plans of the (non-convex) FGW problem; the plan with the lowest objective is
        kept. Beyond the first (the product plan), 2-D starts are the matchings of ``adata_b``
        rotated by evenly spaced angles about its centre (and mirrored when ``reflection``);
        3-D starts are random. Default: 1, or 8 with ``structure_only`` (pure
        Gromov-Wasserstein has rotated local optima).
    nonrigid_bandwidth
        Width of the displacement field's Gaussian kernel, in spot spacings (median
        nearest-neighbour distance of ``adata_a``).
    nonrigid_smoothness
        Ridge penalty of the displacement field relative to the data term; larger is smoother.
    random_state
        Seed of the subsampling and of the PCA.
    device
        Device of the FGW tensor products (``"auto"``: CUDA when available).
    key_added
        ``obsm`` key of the aligned coordinates, written on both sections (``adata_a``'s are a
        copy of its coordinates).
    copy
        Work on copies and return them.

    Returns
    -------
    ``(adata_a, adata_b)`` copies when ``copy=True``, else ``None``. Writes
    ``obsm[key_added]`` on both and, on ``adata_b``, ``uns["alignment"]`` with ``matching``
    (sparse ``n_b x n_a`` plan of the final matching: over every spot, or with subsampling and
    ``nonrigid`` over the subsampled spots),
    ``reference_obs_names``, ``rotation``, ``translation``, ``scale``, ``angle``, ``spacing``,
    ``matched_fraction``, ``n_features``, ``fgw_start``, ``seconds`` and ``params``.
    """
    t0 = time.perf_counter()
    _check_options(alpha=alpha, overlap=overlap, rigid=rigid, nonrigid=nonrigid, refine=refine)
    xa, xb = _coordinates(adata_a, adata_b, spatial_key=spatial_key, layer=layer)
    rng = check_random_state(random_state)
    seed = int(rng.integers(2**31 - 1))
    ia = _subsample(adata_a.n_obs, max_spots, rng)
    ib = _subsample(adata_b.n_obs, max_spots, rng)
    check_fgw_size(len(ia), len(ib))  # before any n x n matrix is built
    subsampled = len(ia) < adata_a.n_obs or len(ib) < adata_b.n_obs
    sub_a, sub_b, pa, pb = adata_a[ia], adata_b[ib], xa[ia], xb[ib]

    if structure_only:
        M, m_scale, space = None, 1.0, None
        C1, C2, embeddings = _structure_matrices(
            sub_a, sub_b, pa, pb, layer=layer, n_pcs=n_pcs, seed=seed, allow_scale=allow_scale
        )
    else:
        M, m_scale, space = _feature_cost(
            sub_a,
            sub_b,
            genes=genes,
            feature_pairs=feature_pairs,
            layer=layer,
            n_pcs=n_pcs,
            n_top_genes=n_top_genes,
            seed=seed,
        )
        C1, C2 = _geometry(pa, pb, allow_scale=allow_scale)
    wa, wb, mass = _masses(len(ia), len(ib), overlap)
    n_init = (8 if structure_only else 1) if n_init is None else int(n_init)
    # Two FGW starts when partial: the partial plan (robust to spots without a counterpart)
    # and the balanced one (globally consistent when the sections overlap fully); the
    # refined fit with the lower local matching cost is kept.
    balanced = mass is not None and not structure_only and not subsampled and refine > 0
    plans = []
    for masses in ((wa, wb, mass), _masses(len(ia), len(ib), None))[: 2 if balanced else 1]:
        plans.append(
            _best_plan(
                M,
                C1,
                C2,
                pa,
                pb,
                alpha=1.0 if structure_only else float(alpha),
                epsilon=epsilon,
                a=masses[0],
                b=masses[1],
                mass=masses[2],
                n_init=n_init,
                reflection=reflection,
                seed=seed,
                device=device,
            ).T  # rows: spots of b, columns: spots of a
        )

    spacing = _spacing(xa)
    plan = plans[0]
    chosen = "balanced" if mass is None else "partial"
    transform = Transform(np.eye(xa.shape[1]), np.zeros(xa.shape[1]))
    if rigid:
        best = None
        for initial in plans:
            plan = initial
            transform = procrustes(plan, pa, pb, reflection=reflection, scale=allow_scale)
            # subsampled: refined on every spot below instead (sparse candidates)
            # structure_only: alternate a feature cost learned from the matches with refinement
            for _ in range(_LEARN_ROUNDS if structure_only and refine and not subsampled else 1):
                if structure_only:
                    M = _learned_cost(plan, *embeddings)
                plan, transform = _refine(
                    plan,
                    transform,
                    M,
                    pa,
                    pb,
                    a=wa,
                    b=wb,
                    mass=mass,
                    spacing=spacing,
                    n_iter=0 if subsampled else int(refine),
                    reflection=reflection,
                    scale=allow_scale,
                )
            cost = _local_cost(M, pa, transform(pb), plan, spacing=spacing)
            if best is None or cost < best[0]:
                best = (cost, plan, transform, "partial" if initial is plans[0] else "balanced")
        _, plan, transform, chosen = best
    matching = _sparse_matching(plan, ib, ia, shape=(adata_b.n_obs, adata_a.n_obs))
    if rigid and refine and subsampled:
        Za = None if space is None else space.embed(adata_a, 0)
        Zb = None if space is None else space.embed(adata_b, 1)
        matching, transform = _refine_all(
            transform,
            xa,
            xb,
            Za,
            Zb,
            m_scale=m_scale,
            spacing=spacing,
            # the plan's spots are this far apart: its transform can be off by about as much
            start_radius=2 * np.sqrt(max(adata_a.n_obs / len(ia), adata_b.n_obs / len(ib))),
            overlap=overlap,
            n_iter=int(refine),
            reflection=reflection,
            scale=allow_scale,
        )
    aligned = transform(xb)
    if nonrigid:
        plan, field = _nonrigid(
            transform(pb),
            M,
            pa,
            a=wa,
            b=wb,
            mass=mass,
            spacing=spacing,
            bandwidth=nonrigid_bandwidth * spacing,
            smoothness=nonrigid_smoothness,
            rng=rng,
        )
        aligned = aligned + field(aligned)
        matching = _sparse_matching(plan, ib, ia, shape=(adata_b.n_obs, adata_a.n_obs))

    target_a, target_b = (adata_a.copy(), adata_b.copy()) if copy else (adata_a, adata_b)
    target_a.obsm[key_added] = xa.copy()
    target_b.obsm[key_added] = aligned
    target_b.uns[_UNS_KEY] = {
        "matching": matching,
        "reference_obs_names": np.asarray(adata_a.obs_names, dtype=str),
        "rotation": transform.rotation,
        "translation": transform.translation,
        "scale": float(transform.scale),
        "angle": transform.angle if xa.shape[1] == 2 else float("nan"),
        "spacing": float(spacing),
        "matched_fraction": float((np.asarray(matching.sum(axis=1)).ravel() > 0).mean()),
        "n_features": 0 if space is None else len(space.keep),
        "fgw_start": chosen,
        "seconds": time.perf_counter() - t0,
        "params": {
            "spatial_key": spatial_key,
            "alpha": float(alpha),
            "rigid": bool(rigid),
            "nonrigid": bool(nonrigid),
            "structure_only": bool(structure_only),
            "feature_pairs": feature_pairs is not None,
            "layer": layer if layer is not None else "X",
            "overlap": float(overlap) if overlap is not None else "balanced",
            "refine": int(refine),
            "reflection": bool(reflection),
            "allow_scale": bool(allow_scale),
            "n_pcs": int(n_pcs),
            "n_top_genes": int(n_top_genes),
            "epsilon": float(epsilon) if epsilon is not None else "exact",
            "max_spots": int(max_spots),
            "n_init": n_init,
            "nonrigid_bandwidth": float(nonrigid_bandwidth),
            "nonrigid_smoothness": float(nonrigid_smoothness),
            "random_state": random_state if isinstance(random_state, int) else "generator",
            "key_added": key_added,
        },
    }
    return (target_a, target_b) if copy else None


# --------------------------------------------------------------------------------------------
# checks and small pieces
# --------------------------------------------------------------------------------------------
def _check_options(*, alpha, overlap, rigid, nonrigid, refine) -> None:
    if not (0.0 <= float(alpha) <= 1.0):
        raise InputError(f"alpha must be in [0, 1] (weight of geometry vs expression), got {alpha}")
    if overlap is not None and not (0.0 < float(overlap) <= 1.0):
        raise InputError(
            f"overlap must be in (0, 1] (fraction of spots with a counterpart) or None for a "
            f"balanced plan, got {overlap}"
        )
    if int(refine) < 0:
        raise InputError(f"refine must be a number of iterations >= 0, got {refine}")
    if not rigid and not nonrigid:
        raise InputError("rigid=False and nonrigid=False leave nothing to fit: enable one of them")


def _coordinates(adata_a, adata_b, *, spatial_key, layer) -> tuple[np.ndarray, np.ndarray]:
    coords = []
    for adata, name in ((adata_a, "adata_a"), (adata_b, "adata_b")):
        check_adata(adata, layer=layer, allow_zero_cells=True, name=name)
        coords.append(check_spatial(adata, spatial_key=spatial_key, name=name))
    xa, xb = coords
    if xa.shape[1] != xb.shape[1]:
        raise InputError(
            f"adata_a has {xa.shape[1]}-D and adata_b {xb.shape[1]}-D coordinates in "
            f"obsm[{spatial_key!r}]: both sections need the same number of coordinate columns"
        )
    return xa, xb


def _masses(n_a: int, n_b: int, overlap: float | None):
    """Spot masses and the transported mass: equal per spot (partial) or uniform (balanced)."""
    if overlap is None:
        return np.full(n_a, 1.0 / n_a), np.full(n_b, 1.0 / n_b), None
    n = max(n_a, n_b)
    return np.full(n_a, 1.0 / n), np.full(n_b, 1.0 / n), float(overlap) * min(n_a, n_b) / n


def _subsample(n: int, max_spots: int, rng: np.random.Generator) -> np.ndarray:
    if int(max_spots) < 10:
        raise InputError(f"max_spots must be at least 10, got {max_spots}")
    if n <= max_spots:
        return np.arange(n)
    return np.sort(rng.choice(n, int(max_spots), replace=False))


def _spacing(coords: np.ndarray) -> float:
    """Median nearest-neighbour distance: the spot spacing of a lattice."""
    if len(coords) < 2:
        return 1.0
    dist, _ = cKDTree(coords).query(coords, k=2)
    spacing = float(np.median(dist[:, 1]))
    return spacing if spacing > 0 else 1.0


def _geometry(pa: np.ndarray, pb: np.ndarray, *, allow_scale: bool):
    C1, C2 = cdist(pa, pa), cdist(pb, pb)
    if allow_scale:
        return C1 / max(C1.max(), 1e-12), C2 / max(C2.max(), 1e-12)
    scale = max(C1.max(), C2.max(), 1e-12)
    return C1 / scale, C2 / scale


def _expression(adata: AnnData, columns, *, layer) -> np.ndarray:
    from ..pp import log_normalize

    X = get_matrix(adata, layer=layer)[:, columns]
    X = log_normalize(X) if is_counts(X) else X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return np.asarray(X, dtype=np.float64)


def _feature_names(adata_a, adata_b, genes, feature_pairs) -> tuple[list[str], list[str]]:
    if feature_pairs is not None:
        pairs = pd.Series(feature_pairs) if isinstance(feature_pairs, Mapping) else feature_pairs
        pairs = pairs[pairs.index.isin(adata_a.var_names) & pairs.isin(adata_b.var_names)]
        if len(pairs) < _MIN_SHARED:
            raise NoSharedFeaturesError(
                f"feature_pairs has {len(pairs)} pair(s) present in both sections, but at least "
                f"{_MIN_SHARED} are needed: map adata_a var_names to adata_b var_names, or pass "
                "structure_only=True to align without comparing features"
            )
        return list(map(str, pairs.index)), list(map(str, pairs.to_numpy()))
    if genes is not None:
        genes = [str(g) for g in genes]
        missing = [g for g in genes if g not in adata_a.var_names or g not in adata_b.var_names]
        if missing:
            raise NoSharedFeaturesError(
                f"{len(missing)} of the {len(genes)} genes are not in both sections (e.g. "
                f"{missing[:5]}): pass genes present in both var_names, or genes=None"
            )
        return genes, genes
    try:
        shared = shared_features(
            adata_a, adata_b, min_shared=_MIN_SHARED, names=("adata_a", "adata_b")
        )
    except NoSharedFeaturesError as err:
        raise NoSharedFeaturesError(
            f"{err}; for two modalities pass feature_pairs={{name_in_a: name_in_b}} or "
            "structure_only=True"
        ) from None
    names = list(map(str, shared))
    return names, names


@dataclass
class _ExpressionSpace:
    """Joint PCA of the two sections' expression (fitted on the spots used for the plan)."""

    columns: tuple[np.ndarray, np.ndarray]  # var indices of the features in a and in b
    keep: np.ndarray  # the features kept (most variable) after normalization
    stats: tuple[tuple | None, tuple | None]  # per-section (mean, sd) for feature_pairs
    pca: Any
    layer: str | None

    def embed(self, adata: AnnData, side: int) -> np.ndarray:
        """PCA coordinates of every spot of ``adata`` (``side`` 0 for a, 1 for b), in chunks."""
        out = []
        for start in range(0, adata.n_obs, _CHUNK):
            X = _expression(adata[start : start + _CHUNK], self.columns[side], layer=self.layer)
            if self.stats[side] is not None:
                mean, sd = self.stats[side]
                X = (X - mean) / sd
            out.append(self.pca.transform(X[:, self.keep]))
        return np.vstack(out)


def _feature_cost(sub_a, sub_b, *, genes, feature_pairs, layer, n_pcs, n_top_genes, seed):
    """Cosine distances between the spots in a joint PCA of their expression (max 1), the
    scale that was divided out, and the fitted expression space."""
    from sklearn.decomposition import PCA

    names_a, names_b = _feature_names(sub_a, sub_b, genes, feature_pairs)
    cols_a = sub_a.var_names.get_indexer(names_a)
    cols_b = sub_b.var_names.get_indexer(names_b)
    Xa = _expression(sub_a, cols_a, layer=layer)
    Xb = _expression(sub_b, cols_b, layer=layer)
    stats: tuple = (None, None)
    if feature_pairs is not None:  # different modalities: put each on its own scale
        stats = (_moments(Xa), _moments(Xb))
        Xa, Xb = (Xa - stats[0][0]) / stats[0][1], (Xb - stats[1][0]) / stats[1][1]
    joint = np.vstack([Xa, Xb])
    keep = np.arange(joint.shape[1])
    if joint.shape[1] > n_top_genes:
        keep = np.sort(np.argsort(joint.var(axis=0))[::-1][: int(n_top_genes)])
        joint = joint[:, keep]
    n_comps = max(1, min(int(n_pcs), min(joint.shape) - 1))
    pca = PCA(n_components=n_comps, random_state=seed).fit(joint)
    Z = pca.transform(joint)
    M = _cosine(Z[: len(Xa)], Z[len(Xa) :])
    scale = max(float(M.max()), 1e-12)
    return M / scale, scale, _ExpressionSpace((cols_a, cols_b), keep, stats, pca, layer)


def _moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sd = X.std(axis=0)
    return X.mean(axis=0), np.where(sd > 0, sd, 1.0)


def _cosine(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Cosine distance; rows of zeros are at distance 1 from everything."""
    na = np.linalg.norm(A, axis=1, keepdims=True)
    nb = np.linalg.norm(B, axis=1, keepdims=True)
    sim = (A / np.where(na > 0, na, 1.0)) @ (B / np.where(nb > 0, nb, 1.0)).T
    return np.clip(1.0 - sim, 0.0, 2.0)


def _structure_matrices(sub_a, sub_b, pa, pb, *, layer, n_pcs, seed, allow_scale):
    """Per section: half spatial distance, half ranked expression dissimilarity (in [0, 1])."""
    from ..pp import pca

    D1, D2 = _geometry(pa, pb, allow_scale=allow_scale)
    out, embeddings = [], []
    for sub, D in ((sub_a, D1), (sub_b, D2)):
        X = _expression(sub, np.arange(sub.n_vars), layer=layer)
        Z = pca(X.astype(np.float32), n_comps=n_pcs, random_state=seed).astype(np.float64)
        E = _cosine(Z, Z)
        ranks = E.ravel().argsort(kind="stable").argsort(kind="stable").reshape(E.shape)
        E = ranks / max(E.size - 1, 1)
        E = 0.5 * (E + E.T)
        np.fill_diagonal(E, 0.0)
        out.append(0.5 * D + 0.5 * E)
        embeddings.append(Z)
    return out[0], out[1], embeddings


def _learned_cost(plan_ba: np.ndarray, Za: np.ndarray, Zb: np.ndarray) -> np.ndarray:
    """Cosine distances after a ridge map from ``b``'s embedding to ``a``'s, fitted on the
    matches of the plan (each matched spot of ``b`` against its barycentre in ``a``)."""
    mass = plan_ba.sum(axis=1)
    matched = mass > 0
    target = (plan_ba[matched] @ Za) / mass[matched, None]
    source = np.hstack([Zb, np.ones((len(Zb), 1))])
    fit = source[matched]
    gram = fit.T @ (mass[matched, None] * fit)
    ridge = 1e-3 * np.trace(gram) / len(gram) * np.eye(len(gram))
    W = np.linalg.solve(gram + ridge, fit.T @ (mass[matched, None] * target))
    M = _cosine(Za, source @ W)
    return M / max(M.max(), 1e-12)


def _best_plan(M, C1, C2, pa, pb, *, alpha, epsilon, a, b, mass, n_init, reflection, seed, device):
    """The FGW plan with the lowest objective over ``n_init`` starts."""
    if n_init < 1:
        raise InputError(f"n_init must be at least 1, got {n_init}")
    starts: list[np.ndarray | None] = [None]
    if n_init > 1 and pa.shape[1] == 2:
        starts += _rotated_starts(pa, pb, a, b, mass, n_init - 1, reflection=reflection)
    best = None
    screen = 10 if len(starts) > 1 else None  # screen many starts briefly, finish the best
    solve = functools.partial(
        fused_gromov_wasserstein,
        M,
        C1,
        C2,
        alpha=alpha,
        epsilon=epsilon,
        a=a,
        b=b,
        mass=mass,
        device=device,
        max_entries=MAX_ENTRIES,
    )
    for start in starts:
        extra = n_init if (start is None and pa.shape[1] != 2) else 1
        plan, log = solve(
            G0=start, n_init=extra, random_state=seed, return_log=True, max_iter=screen or 1000
        )
        if best is None or log.objective < best[1].objective:
            best = (plan, log)
    if screen is not None and not best[1].converged:
        return solve(G0=best[0])
    return best[0]


def _rotated_starts(pa, pb, a, b, mass, n, *, reflection):
    """Transport plans matching ``pb`` rotated by ``n`` evenly spaced angles onto ``pa``."""
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
            starts.append(exact_transport(cost, a, b, mass=mass))
    return starts[:n]


def _match_cost(M, pa, moved, *, spacing) -> np.ndarray:
    """``(n_a, n_b)`` cost of the local matching: half the expression cost ``M`` and half the
    squared distance in units of ``_REFINE_RADIUS`` spacings, capped at 1."""
    near = np.minimum(cdist(pa, moved, "sqeuclidean") / (_REFINE_RADIUS * spacing) ** 2, 1.0)
    return near if M is None else (1 - _REFINE_WEIGHT) * M + _REFINE_WEIGHT * near


def _local_plan(M, pa, moved, *, a, b, mass, spacing):
    """Exact (partial) plan on :func:`_match_cost`, rows ``moved`` (b)."""
    return exact_transport(_match_cost(M, pa, moved, spacing=spacing), a, b, mass=mass).T


def _local_cost(M, pa, moved, plan, *, spacing) -> float:
    """Mean cost of :func:`_local_plan`'s objective under ``plan`` (rows b)."""
    cost = _match_cost(M, pa, moved, spacing=spacing).T
    return float((cost * plan).sum() / max(plan.sum(), 1e-300))


def _refine(plan, transform, M, pa, pb, *, a, b, mass, spacing, n_iter, reflection, scale):
    """Local re-matching around the current transform (ICP with expression).

    Each round matches the spots by exact (partial) transport on half the expression cost and
    half the squared distance after the transform, in units of ``2 spacings`` and capped at 1
    (so only nearby spots compete), then refits the transform. Stops when no spot moves by more
    than ``1e-3`` spacings.
    """
    for _ in range(n_iter):
        moved = transform(pb)
        new_plan = _local_plan(M, pa, moved, a=a, b=b, mass=mass, spacing=spacing)
        new = procrustes(new_plan, pa, pb, reflection=reflection, scale=scale)
        plan, shift = new_plan, float(np.abs(new(pb) - moved).max())
        transform = new
        if shift < 1e-3 * spacing:
            break
    return plan, transform


def _refine_all(
    transform,
    xa,
    xb,
    Za,
    Zb,
    *,
    m_scale,
    spacing,
    start_radius,
    overlap,
    n_iter,
    reflection,
    scale,
):
    """:func:`_refine` on every spot of large sections, with sparse candidates, coarse to fine.

    Each spot of b (moved by the current transform) is matched to the best of the spots of a
    within a radius, on the cost of :func:`_refine` with that radius; the ``overlap``
    fraction with the lowest costs is kept (all when ``overlap`` is None), and the transform
    refitted. The radius starts at ``start_radius`` spacings (the error a plan on subsampled
    spots can leave) and halves every round down to ``_REFINE_RADIUS``; then ``n_iter``
    rounds at that radius at most. Returns the sparse matching (each kept spot of b with mass
    ``1 / n_b``) and the transform.
    """
    tree = cKDTree(xa)
    unit_a = None if Za is None else _unit_rows(Za)
    unit_b = None if Zb is None else _unit_rows(Zb)
    radii = [float(start_radius)]
    while radii[-1] / 2 > _REFINE_RADIUS:
        radii.append(radii[-1] / 2)
    radii += [_REFINE_RADIUS] * max(n_iter, 1)
    matching = None
    for i, radius in enumerate(radii):
        moved = transform(xb)
        # candidates: every spot of a in the disc (hexagonal density bounds the count)
        k = int(min(len(xa), np.ceil(1.3 * np.pi * radius**2) + 1))
        # coarse rounds lean on expression: the true partner may still be far
        weight = _REFINE_WEIGHT if radius <= _REFINE_RADIUS else _COARSE_WEIGHT
        rows, cols, cost = _candidates(
            tree, moved, unit_a, unit_b, k, radius * spacing, m_scale, weight
        )
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
        new = procrustes(matching, xa, xb, reflection=reflection, scale=scale)
        shift = float(np.abs(new(xb) - moved).max())
        transform = new
        if radius == _REFINE_RADIUS and i > 0 and shift < 1e-3 * spacing:
            break
    if matching is None:
        matching = sp.csr_matrix((len(xb), len(xa)))
    return matching, transform


def _candidates(tree, moved, unit_a, unit_b, k, radius, m_scale, weight):
    """Candidate pairs (b spot, a spot within ``radius``) and their costs."""
    n = len(moved)
    rows, cols, costs = [], [], []
    step = max(1, _CHUNK_ENTRIES // max(k, 1))
    for start in range(0, n, step):
        part = slice(start, min(n, start + step))
        dist, idx = tree.query(moved[part], k=k, distance_upper_bound=radius)
        dist, idx = dist.reshape(-1, k), idx.reshape(-1, k)
        valid = idx < tree.n
        idx = np.where(valid, idx, 0)
        cost = np.minimum(dist**2 / radius**2, 1.0)
        if unit_a is not None:
            similarity = np.einsum("nd,nkd->nk", unit_b[part], unit_a[idx])
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


# --------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------
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


def apply_transform(adata: AnnData, *, spatial_key: str = "spatial") -> np.ndarray:
    """Apply the rigid transform stored in ``adata.uns["alignment"]`` to ``obsm[spatial_key]``
    (e.g. to coordinates of another resolution of the same section)."""
    info = adata.uns.get(_UNS_KEY)
    if info is None or "rotation" not in info:
        raise InputError(
            "adata.uns['alignment'] is missing: run cellweave.tl.align_sections(adata_a, adata) "
            "first"
        )
    transform = Transform(
        np.asarray(info["rotation"]), np.asarray(info["translation"]), float(info["scale"])
    )
    return transform(check_spatial(adata, spatial_key=spatial_key))


@dataclass(frozen=True)
class _DisplacementField:
    """Smooth displacement ``f(x) = sum_k K(x, z_k) beta_k`` with a Gaussian kernel."""

    centres: np.ndarray
    beta: np.ndarray
    bandwidth: float

    @classmethod
    def fit(cls, plan_ba, target, points, centres, *, spot_mass, bandwidth, smoothness):
        """Kernel ridge regression of ``barycentre(plan) - points`` over the matched points.

        ``smoothness`` scales the RKHS penalty relative to the mean diagonal of the data term.
        """
        mass = np.asarray(plan_ba.sum(axis=1)).ravel()
        weights = np.clip(mass / spot_mass, 0.0, 1.0)
        matched = weights > 0
        barycentres = np.asarray(plan_ba[matched] @ target) / mass[matched, None]
        residual = barycentres - points[matched]
        w = weights[matched]
        K = _gaussian(points[matched], centres, bandwidth)
        Kzz = _gaussian(centres, centres, bandwidth)
        lhs = K.T @ (w[:, None] * K)
        lam = float(smoothness) * np.trace(lhs) / len(centres)
        ridge = lhs + lam * Kzz + 1e-10 * np.eye(len(centres))
        beta = np.linalg.solve(ridge, K.T @ (w[:, None] * residual))
        return cls(centres, beta, float(bandwidth))

    def __call__(self, coords: np.ndarray) -> np.ndarray:
        return _gaussian(coords, self.centres, self.bandwidth) @ self.beta


def _nonrigid(rigid, M, pa, *, a, b, mass, spacing, bandwidth, smoothness, rng):
    """Non-rigid ICP: alternate local matching (as in :func:`_refine`, from the current warped
    positions) with a displacement field fitted on the rigid positions, until no spot moves
    by more than ``1e-3`` spacings."""
    centres = rigid[np.sort(rng.choice(len(rigid), min(len(rigid), _N_CENTRES), replace=False))]
    moved, plan, field = rigid, None, None
    for _ in range(_NONRIGID_ROUNDS):
        plan = _local_plan(M, pa, moved, a=a, b=b, mass=mass, spacing=spacing)
        field = _DisplacementField.fit(
            plan,
            pa,
            rigid,
            centres,
            spot_mass=b.max(),
            bandwidth=bandwidth,
            smoothness=smoothness,
        )
        new = rigid + field(rigid)
        shift = float(np.abs(new - moved).max())
        moved = new
        if shift < 1e-3 * spacing:
            break
    return plan, field


def _gaussian(x: np.ndarray, z: np.ndarray, bandwidth: float) -> np.ndarray:
    return np.exp(-cdist(x, z, "sqeuclidean") / (2.0 * bandwidth**2))


def _sparse_matching(
    plan_ba: np.ndarray, ib: np.ndarray, ia: np.ndarray, *, shape
) -> sp.csr_matrix:
    """The plan as a sparse ``n_b x n_a`` matrix over all spots (tiny entries dropped)."""
    plan = np.where(plan_ba > 1e-8 * plan_ba.max(), plan_ba, 0.0)
    rows, cols = np.nonzero(plan)
    return sp.csr_matrix((plan[rows, cols], (ib[rows], ia[cols])), shape=shape)


def perturb_section(
    adata: AnnData,
    *,
    angle: float = 0.0,
    shift: Sequence[float] = (0.0, 0.0),
    drop: float = 0.0,
    thin: float = 1.0,
    mirror: bool = False,
    warp: float = 0.0,
    spatial_key: str = "spatial",
    random_state: RandomState = 0,
) -> tuple[AnnData, np.ndarray]:
    """A copy of a 2-D section moved by a known transform, to check an alignment against.

    In order: a fraction ``drop`` of the spots is removed, counts are binomially thinned
    (each molecule kept with probability ``thin``), the coordinates are mirrored (x flipped),
    warped by a smooth sine displacement of amplitude ``warp`` (one period over the section),
    rotated by ``angle`` degrees about their centroid and shifted by ``shift``.

    Returns
    -------
    ``(moved, truth)``: the moved copy and the original coordinates of its spots, i.e. where
    a perfect alignment onto ``adata`` puts them.
    """
    if not (0.0 <= drop < 1.0 and 0.0 < thin <= 1.0):
        raise InputError(f"drop must be in [0, 1) and thin in (0, 1], got {drop} and {thin}")
    rng = check_random_state(random_state)
    coords = check_spatial(adata, spatial_key=spatial_key, ndim=2)
    keep = np.sort(rng.choice(adata.n_obs, max(1, round(adata.n_obs * (1 - drop))), replace=False))
    moved = adata[keep].copy()
    if thin < 1.0:
        X = moved.X
        if sp.issparse(X):
            X = X.tocsr(copy=True)
            X.data = rng.binomial(np.rint(X.data).astype(np.int64), thin).astype(X.dtype)
            X.eliminate_zeros()
        else:
            X = rng.binomial(np.rint(np.asarray(X)).astype(np.int64), thin).astype(np.float32)
        moved.X = X
    truth = coords[keep]
    centre = truth.mean(axis=0)
    xy = truth - centre
    if mirror:
        xy[:, 0] = -xy[:, 0]
    if warp:
        extent = max(float(np.ptp(xy, axis=0).max()), 1e-12)
        xy = (
            xy
            + warp
            * np.c_[np.sin(2 * np.pi * xy[:, 1] / extent), np.sin(2 * np.pi * xy[:, 0] / extent)]
        )
    theta = np.deg2rad(angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved.obsm[spatial_key] = xy @ rot.T + centre + np.asarray(shift, dtype=float)
    return moved, truth
