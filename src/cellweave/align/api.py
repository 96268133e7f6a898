"""``align_sections``: move one spatial section (or modality) onto another's frame.

The matching is a fused Gromov-Wasserstein plan between the spots of the two sections
(:mod:`~cellweave.align.plan`), fusing an expression cost (shared genes, or paired features,
in a joint PCA; :mod:`~cellweave.align.features`) with the sections' own geometry, as in PASTE
(Zeira et al. 2022). By default the plan is *partial*: only a fraction ``overlap`` of the spots
must find a counterpart, so spots missing from one section do not drag the others. A weighted
Procrustes fit of the plan, refined ICP-style, gives the rigid transform
(:mod:`~cellweave.align.rigid`), and an optional smooth displacement field gives a non-rigid
refinement (:mod:`~cellweave.align.nonrigid`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._params import params_entry
from .._utils import RandomState, check_random_state
from ..device import check_device
from ..errors import InputError, InvalidOptionError
from ..registry import Method
from ..validate import check_adata, check_min_obs, check_seed, check_spatial
from .features import FeatureOptions
from .nonrigid import NonrigidOptions
from .pairs import FeaturePairs, resolve_pairs
from .plan import Matching, MatchOptions, Pair, sparse_matching
from .rigid import RigidOptions, Transform, refine_all
from .solvers import check_options, selected

__all__ = ["MIN_SPOTS", "Alignment", "align_sections", "apply_transform"]

#: ``uns`` key every call also writes (the same entry as ``uns[key_added]``), read by
#: :func:`apply_transform` and the overlay plot by default.
UNS_KEY = "alignment"
#: Fewest spots per section: a rigid transform in 2-D is fixed by 3 points not on a line.
MIN_SPOTS = 3


@dataclass(frozen=True)
class Alignment:
    """What an alignment found, before it is written.

    Attributes
    ----------
    aligned
        Coordinates of every spot of b in a's frame.
    transform
        The rigid transform (identity with ``rigid=False``).
    matching
        Sparse ``n_b x n_a`` matching of the final step.
    start
        The FGW start the kept rigid fit came from (``"partial"`` or ``"balanced"``).
    spacing
        Spot spacing of section a.
    n_features
        Features compared (0 with ``structure_only``).
    """

    aligned: np.ndarray
    transform: Transform
    matching: sp.csr_matrix
    start: str
    spacing: float
    n_features: int


@dataclass(frozen=True)
class _Steps:
    """The checked options of one call, grouped by step."""

    match: MatchOptions
    rigid: RigidOptions
    nonrigid: NonrigidOptions
    max_spots: int
    solvers: tuple[Method, ...]  # the matching solver, then the transforms


def align_sections(
    adata_a: AnnData,
    adata_b: AnnData,
    *,
    spatial_key: str = "spatial",
    alpha: float = 0.1,
    rigid: bool = True,
    nonrigid: bool = False,
    genes: Sequence[str] | None = None,
    feature_pairs: str | Path | Mapping[str, str] | pd.Series | pd.DataFrame | None = None,
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
) -> AnnData | None:
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
        For two modalities whose feature names differ (e.g. RNA vs protein): ``"auto"`` pairs
        genes with antibodies by name (:func:`cellweave.links.gene_protein_links`, in either
        direction: the section whose names match genes is the RNA one); a table (path to a
        CSV/TSV file or a two-column DataFrame: feature of ``adata_a``, feature of
        ``adata_b``); or a mapping / Series from feature names of ``adata_a`` to those of
        ``adata_b``. Checked before any work (at least 5 pairs, every name present, no pair
        twice). Each section's paired features are then put on a common scale separately
        (counts normalized by the section's whole library and log-transformed, then each
        feature replaced by the normal scores of its ranks) before the joint PCA.
    structure_only
        Compare no features across the sections (modality-agnostic): each section's structure
        matrix fuses its spatial distances with the ranks of its own expression
        dissimilarities, and the plan is pure Gromov-Wasserstein over these.
    layer
        Read expression from this layer of both sections instead of ``X``. Raw counts are
        log-normalized; other values are used as they are.
    overlap
        Fraction of the smaller section's spots expected to have a counterpart, in (0, 1]: the
        partial FGW plan and the refinement move this much mass (every spot carries the same
        mass). The balanced FGW plan is tried as a second start, and the refined fit with the
        lower local matching cost kept (``fgw_start`` in ``uns``). ``None``: balanced
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
        Sections with more spots are subsampled (seeded) to this many (at least 10) for the
        plan; the transform is applied to every spot.
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
        Device of the FGW tensor products: ``"auto"`` (CUDA when available), ``"cpu"``,
        ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or ``"mps"`` (checked before any work, see
        :func:`cellweave.device.parse_device`).
    key_added
        Key of everything the call writes: ``obsm[key_added]`` (the aligned coordinates, on
        both sections with ``copy=False``; ``adata_a``'s are a copy of its coordinates) and
        ``uns[key_added]`` on ``adata_b`` (also reachable as ``uns["alignment"]``).
    copy
        Leave both sections unchanged and return a changed copy of ``adata_b``.

    Returns
    -------
    The aligned copy of ``adata_b`` when ``copy=True``, else ``None`` (as scanpy does). The
    ``uns[key_added]`` entry holds ``params`` (the call's options, JSON-safe), ``matching``
    (sparse ``n_b x n_a`` plan of the final matching: over every spot, or with subsampling and
    ``nonrigid`` over the subsampled spots), ``reference_obs_names``, ``rotation``,
    ``translation``, ``scale``, ``angle``, ``spacing``, ``matched_fraction`` (share of B's
    spots given any matching mass; with ``overlap`` close to that setting by construction),
    ``overlap_fraction`` (measured: share of B's aligned spots within one spot spacing of a
    spot of A), ``n_features``, ``fgw_start`` and ``seconds``; with ``feature_pairs`` also
    ``feature_pairs`` (``{"a": names, "b": names}``, the pairs compared) and in ``params``
    where they came from (``feature_pairs``: ``"auto"``, ``"table"`` or ``"mapping"``),
    ``n_feature_pairs`` and ``rna_section`` (``"a"`` / ``"b"`` with ``"auto"``).

    Raises
    ------
    InvalidOptionError
        An option of the wrong type or out of range, ``rigid=False`` with
        ``nonrigid=False``, or ``feature_pairs`` with ``structure_only``; before any work (see
        ``cellweave align --list-methods``).
    NoSharedFeaturesError, MissingKeyError, DuplicateNamesError, FileFormatError
        ``feature_pairs`` without enough pairs, naming absent features, listing a pair twice,
        or an unreadable table (see :func:`cellweave.align.resolve_pairs`).
    """
    t0 = time.perf_counter()
    options = check_options(
        {
            "rigid": rigid,
            "nonrigid": nonrigid,
            "structure_only": structure_only,
            "alpha": alpha,
            "overlap": overlap,
            "epsilon": epsilon,
            "n_init": n_init,
            "max_spots": max_spots,
            "n_pcs": n_pcs,
            "n_top_genes": n_top_genes,
            "refine": refine,
            "reflection": reflection,
            "allow_scale": allow_scale,
            "nonrigid_bandwidth": nonrigid_bandwidth,
            "nonrigid_smoothness": nonrigid_smoothness,
        }
    )
    if options["structure_only"] and feature_pairs is not None:
        raise InvalidOptionError(
            "structure_only=True compares no feature across the sections, so feature_pairs "
            "is not used: pass one of the two"
        )
    check_device(device, float64=True)  # FGW runs in float64
    if random_state is not None:
        check_seed(random_state, allow_generator=True)
    xa, xb = _coordinates(adata_a, adata_b, spatial_key=spatial_key, layer=layer)
    pairs = resolve_pairs(feature_pairs, adata_a.var_names, adata_b.var_names)
    features = FeatureOptions(
        genes,
        None if pairs is None else pairs.series(),
        layer,
        options["n_pcs"],
        options["n_top_genes"],
    )
    steps = _steps(options, features, device=device)
    result = _align(adata_a, adata_b, xa, xb, steps, random_state=random_state)
    params = _params(
        options,
        steps,
        spatial_key=spatial_key,
        layer=layer,
        pairs=pairs,
        random_state=random_state,
        key_added=key_added,
    )
    target_b = adata_b.copy() if copy else adata_b
    if not copy:  # the reference's aligned coordinates are its own
        adata_a.obsm[key_added] = xa.copy()
    target_b.obsm[key_added] = result.aligned
    entry = {**params_entry(params), **_summary(result, adata_a, ndim=xa.shape[1])}
    if pairs is not None:
        entry["feature_pairs"] = {
            "a": np.asarray(pairs.a, dtype=str),
            "b": np.asarray(pairs.b, dtype=str),
        }
    entry["overlap_fraction"] = overlap_fraction(xa, result.aligned, result.spacing)
    entry["seconds"] = time.perf_counter() - t0
    target_b.uns[key_added] = entry
    target_b.uns[UNS_KEY] = entry
    return target_b if copy else None


def _steps(options: dict[str, Any], features: FeatureOptions, *, device: str) -> _Steps:
    """The checked options grouped into each step's frozen options."""
    structure_only = options["structure_only"]
    n_init = options["n_init"]
    match = MatchOptions(
        alpha=options["alpha"],
        overlap=options["overlap"],
        epsilon=options["epsilon"],
        n_init=(8 if structure_only else 1) if n_init is None else n_init,
        reflection=options["reflection"],
        allow_scale=options["allow_scale"],
        device=device,
        balanced_start=options["rigid"] and options["refine"] > 0,
        features=features,
    )
    rigid = RigidOptions(options["refine"], options["reflection"], options["allow_scale"])
    nonrigid = NonrigidOptions(options["nonrigid_bandwidth"], options["nonrigid_smoothness"])
    solvers = selected(
        structure_only=structure_only, rigid=options["rigid"], nonrigid=options["nonrigid"]
    )
    return _Steps(match, rigid, nonrigid, options["max_spots"], solvers)


def _coordinates(adata_a, adata_b, *, spatial_key, layer) -> tuple[np.ndarray, np.ndarray]:
    coords = []
    for adata, name in ((adata_a, "adata_a"), (adata_b, "adata_b")):
        check_adata(adata, layer=layer, allow_zero_cells=True, allow_all_zero=False, name=name)
        check_min_obs(adata, MIN_SPOTS, what="spots", name=name)
        coords.append(
            check_spatial(adata, spatial_key=spatial_key, allow_degenerate=False, name=name)
        )
    xa, xb = coords
    if xa.shape[1] != xb.shape[1]:
        raise InputError(
            f"adata_a has {xa.shape[1]}-D and adata_b {xb.shape[1]}-D coordinates in "
            f"obsm[{spatial_key!r}]: both sections need the same number of coordinate columns"
        )
    return xa, xb


def _align(adata_a, adata_b, xa, xb, steps: _Steps, *, random_state) -> Alignment:
    """Run the steps: matching, then the rigid transform (refined on every spot when the plan
    was subsampled), then the displacement field."""
    rng = check_random_state(random_state)
    seed = int(rng.integers(2**31 - 1))
    pair = Pair.sample(xa, xb, max_spots=steps.max_spots, rng=rng)
    matcher, *transforms = steps.solvers
    sub_a, sub_b = adata_a[pair.ia], adata_b[pair.ib]
    matching: Matching = matcher.runner(pair, sub_a, sub_b, steps.match, seed=seed)
    names = {method.name: method for method in transforms}
    M = matching.costs.M
    plan = matching.plans[0][1]
    start = "balanced" if matching.masses.mass is None else "partial"
    transform = Transform.identity(xa.shape[1])
    if "rigid" in names:
        fit = names["rigid"].runner(pair, matching, steps.rigid)
        plan, transform, start, M = fit.plan, fit.transform, fit.start, fit.M
    sparse = sparse_matching(plan, pair)
    if "rigid" in names and steps.rigid.refine and pair.subsampled:
        space = matching.costs.space
        embedded = None if space is None else (space.embed(adata_a, 0), space.embed(adata_b, 1))
        sparse, transform = refine_all(
            transform,
            pair,
            embedded,
            m_scale=matching.costs.scale,
            overlap=steps.match.overlap,
            options=steps.rigid,
        )
    aligned = transform(xb)
    if "nonrigid" in names:
        moved = transform(pair.pb)
        plan, field = names["nonrigid"].runner(
            moved,
            M,
            pair.pa,
            matching.masses,
            spacing=pair.spacing,
            options=steps.nonrigid,
            rng=rng,
        )
        aligned = aligned + field(aligned)
        sparse = sparse_matching(plan, pair)
    space = matching.costs.space
    n_features = 0 if space is None else len(space.keep)
    return Alignment(aligned, transform, sparse, start, pair.spacing, n_features)


def _params(
    options: dict[str, Any],
    steps: _Steps,
    *,
    spatial_key: str,
    layer: str | None,
    pairs: FeaturePairs | None,
    random_state: RandomState,
    key_added: str,
) -> dict[str, Any]:
    """The call's options as written to ``uns[key_added]["params"]``."""
    overlap, epsilon = options["overlap"], options["epsilon"]
    return {
        "spatial_key": spatial_key,
        "alpha": options["alpha"],
        "rigid": options["rigid"],
        "nonrigid": options["nonrigid"],
        "structure_only": options["structure_only"],
        **({"feature_pairs": False} if pairs is None else pairs.describe()),
        "layer": layer if layer is not None else "X",
        "overlap": overlap if overlap is not None else "balanced",
        "refine": options["refine"],
        "reflection": options["reflection"],
        "allow_scale": options["allow_scale"],
        "n_pcs": options["n_pcs"],
        "n_top_genes": options["n_top_genes"],
        "epsilon": epsilon if epsilon is not None else "exact",
        "max_spots": options["max_spots"],
        "n_init": steps.match.n_init,
        "nonrigid_bandwidth": options["nonrigid_bandwidth"],
        "nonrigid_smoothness": options["nonrigid_smoothness"],
        "random_state": random_state if isinstance(random_state, int) else "generator",
        "key_added": key_added,
    }


def _summary(result: Alignment, adata_a: AnnData, *, ndim: int) -> dict[str, Any]:
    """The result entries of ``uns[key_added]`` (arrays kept as arrays, the plan sparse)."""
    transform, matching = result.transform, result.matching
    return {
        "matching": matching,
        "reference_obs_names": np.asarray(adata_a.obs_names, dtype=str),
        "rotation": transform.rotation,
        "translation": transform.translation,
        "scale": float(transform.scale),
        "angle": transform.angle if ndim == 2 else float("nan"),
        "spacing": float(result.spacing),
        "matched_fraction": float((np.asarray(matching.sum(axis=1)).ravel() > 0).mean()),
        "n_features": result.n_features,
        "fgw_start": result.start,
    }


def overlap_fraction(xa: np.ndarray, xb_aligned: np.ndarray, spacing: float) -> float:
    """Share of the aligned spots of B that have a spot of A within one ``spacing`` (the
    measured overlap of the two sections after alignment, whatever ``overlap`` was set)."""
    from ..graph import nearest_neighbors

    if not np.isfinite(spacing) or spacing <= 0 or len(xa) == 0 or len(xb_aligned) == 0:
        return float("nan")
    dist, _ = nearest_neighbors(np.asarray(xa, dtype=float), 1, query=np.asarray(xb_aligned))
    return float((dist[:, 0] <= spacing).mean())


def apply_transform(
    adata: AnnData, *, spatial_key: str = "spatial", key: str = UNS_KEY
) -> np.ndarray:
    """Apply the rigid transform stored in ``adata.uns[key]`` to ``obsm[spatial_key]`` (e.g. to
    coordinates of another resolution of the same section).

    ``key``: the ``key_added`` of the alignment (default: the latest alignment, which every
    call also writes to ``uns["alignment"]``).
    """
    info = adata.uns.get(key)
    if info is None or "rotation" not in info:
        raise InputError(
            f"adata.uns[{key!r}] is missing: run cellweave.tl.align_sections(adata_a, adata) first"
        )
    transform = Transform(
        np.asarray(info["rotation"]), np.asarray(info["translation"]), float(info["scale"])
    )
    return transform(check_spatial(adata, spatial_key=spatial_key))
