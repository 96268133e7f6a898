"""``tl.map_cells`` and what follows from a mapping: genes, cell-type fractions, locations.

Methods (``method=``):

``"ot"`` (the default, ``"auto"``)
    Unbalanced entropic optimal transport on the cosine cost, each spot restricted to its 50
    most similar cells (:func:`cellweave.mapping.ot.entropic_plan`). Options: ``epsilon``
    (0.15), ``unbalanced`` (0.1: KL weight of the relaxed marginals; ``None``: exact, then
    each cell's 50 most similar spots join the candidates), ``spot_mass`` (``"uniform"`` or
    ``"counts"``: proportional to the spots' totals), ``n_candidates`` (50; ``None``: dense
    when small), ``max_iter``, ``tol``.
``"softmax"``
    Each spot spreads its mass over its most similar reference cells with softmax weights
    whose temperature is set per spot for a fixed perplexity (semi-relaxed entropic OT; see
    :func:`cellweave.mapping.ot.softmax_plan`). Options: ``perplexity`` (50),
    ``n_candidates`` (``4 * perplexity``).
``"fgw"``
    Fused Gromov-Wasserstein: the expression cost plus the agreement of distances between
    cells (geodesic, on their kNN graph in feature space) with distances between spots
    (geodesic on the spatial kNN graph), novoSpaRc-style; uses ``adata_sp.obsm["spatial"]``.
    Options: ``alpha`` (0.5, weight of the structure), ``epsilon`` (0.05; ``None``: exact),
    ``n_neighbors`` (5), ``max_iter`` (20 outer iterations), ``tol``.
``"gradient"``
    Tangram-like softmax mapping of cells fitted for cosine similarity per gene and per spot
    with a cell-density prior (:mod:`cellweave.mapping.gradient`). Options:
    ``lambda_spot``, ``lambda_density``, ``lambda_entropy``, ``density`` (``"uniform"`` or
    ``"counts"``), ``lr``, ``max_epochs``, ``batch_size``, ``n_candidates``.

Feature options (any method): ``normalize``, ``scale``, ``n_pcs``, ``denoise``,
``gene_weights``, ``max_genes`` (see :func:`cellweave.mapping.features.prepare_features`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..errors import InputError
from ..validate import check_obs_key, check_spatial
from .features import Features, learned_gene_weights, prepare_features, to_dense
from .fractions import cell_type_fractions
from .genes import _columns, _mapped_genes, predict_genes, project_genes  # noqa: F401 (evaluate)
from .result import UNS_KEY, Mapping

__all__ = [
    "DEFAULT_METHOD",
    "EVALUATED_METHODS",
    "METHODS",
    "cell_type_fractions",
    "get_method",
    "map_cells",
    "predict_genes",
    "project_genes",
]

#: The method ``map_cells`` uses for ``method="auto"`` (measured best; ``docs/mapping.md``).
DEFAULT_METHOD = "ot"
#: cellweave's methods that the leave-gene-out evaluation runs for ``methods="all"``.
EVALUATED_METHODS = ("ot", "softmax", "gradient", "fgw")
#: Options of :func:`prepare_features`, accepted by every method.
FEATURE_OPTIONS = ("normalize", "scale", "n_pcs", "denoise", "gene_weights", "max_genes")


@dataclass(frozen=True)
class MethodSpec:
    """A mapping method: its solver and the feature options it starts from."""

    name: str
    run: Callable[..., tuple[sparse.csr_matrix, dict[str, Any]]]
    description: str
    features: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- solvers


def _run_softmax(
    feats: Features,
    adata_sp: AnnData,
    *,
    perplexity: float = 50.0,
    n_candidates: int | None = None,
    device: str = "auto",
    random_state: int = 0,
) -> tuple[sparse.csr_matrix, dict[str, Any]]:
    from .ot import softmax_plan

    plan = softmax_plan(
        feats.sc,
        feats.sp_mapped,
        perplexity=perplexity,
        n_candidates=n_candidates,
        device=device,
    )
    return plan, {"perplexity": float(perplexity), "n_candidates": n_candidates}


def _spot_mass(feats: Features, how: str) -> np.ndarray:
    totals = feats.spot_totals[~feats.spot_empty]
    if how == "uniform":
        mass = np.ones_like(totals)
    elif how == "counts":
        mass = totals.copy()
    else:
        raise InputError(f"spot_mass/density must be 'uniform' or 'counts', got {how!r}")
    return mass / mass.sum()


def _run_ot(
    feats: Features,
    adata_sp: AnnData,
    *,
    epsilon: float = 0.15,
    unbalanced: float | None = 0.1,
    spot_mass: str = "uniform",
    n_candidates: int | None = 50,
    max_iter: int = 2000,
    tol: float = 1e-6,
    device: str = "auto",
    random_state: int = 0,
) -> tuple[sparse.csr_matrix, dict[str, Any]]:
    from .ot import entropic_plan

    plan = entropic_plan(
        feats.sc,
        feats.sp_mapped,
        epsilon=epsilon,
        unbalanced=unbalanced,
        b=_spot_mass(feats, spot_mass),
        n_candidates=n_candidates,
        max_iter=max_iter,
        tol=tol,
        device=device,
    )
    info = {
        "epsilon": float(epsilon),
        "unbalanced": unbalanced,
        "spot_mass": spot_mass,
        "n_candidates": n_candidates,
    }
    return plan, info


def _geodesic(points: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Shortest-path distances on the kNN graph of ``points``, scaled to maximum 1
    (disconnected pairs get 1.5 times the largest finite distance)."""
    from scipy.sparse.csgraph import shortest_path
    from scipy.spatial import cKDTree

    k = int(min(n_neighbors, len(points) - 1))
    dist, idx = cKDTree(points).query(points, k=k + 1)
    rows = np.repeat(np.arange(len(points)), k)
    graph = sparse.csr_matrix(
        (np.maximum(dist[:, 1:].ravel(), 1e-12), (rows, idx[:, 1:].ravel())),
        shape=(len(points), len(points)),
    )
    D = shortest_path(graph, directed=False)
    finite = np.isfinite(D)
    top = D[finite].max() if finite.any() else 1.0
    D[~finite] = 1.5 * top
    return D / max(D.max(), 1e-12)


def _run_fgw(
    feats: Features,
    adata_sp: AnnData,
    *,
    alpha: float = 0.5,
    epsilon: float | None = 0.05,
    n_neighbors: int = 5,
    spatial_key: str = "spatial",
    max_iter: int = 20,
    tol: float = 1e-7,
    device: str = "auto",
    random_state: int = 0,
) -> tuple[sparse.csr_matrix, dict[str, Any]]:
    from ..ot import (
        check_fgw_size,
        cosine_cost,
        fused_gromov_wasserstein,
        normalize_cost,
        sparse_plan,
    )

    coords = check_spatial(adata_sp, spatial_key=spatial_key, name="adata_sp")
    coords = coords[~feats.spot_empty]
    check_fgw_size(len(feats.sc), len(coords))
    M = normalize_cost(cosine_cost(feats.sc, feats.sp_mapped), by="max")
    C1 = _geodesic(feats.sc.astype(np.float64), n_neighbors)
    C2 = _geodesic(coords, n_neighbors)
    plan = fused_gromov_wasserstein(
        M,
        C1,
        C2,
        alpha=alpha,
        epsilon=epsilon,
        max_iter=max_iter,
        tol=tol,
        random_state=random_state,
        device=device,
    )
    info = {"alpha": float(alpha), "epsilon": epsilon, "n_neighbors": int(n_neighbors)}
    return sparse_plan(plan), info


def _run_gradient(
    feats: Features,
    adata_sp: AnnData,
    *,
    density: str = "uniform",
    lambda_spot: float = 1.0,
    lambda_density: float = 1.0,
    lambda_entropy: float = 0.0,
    lr: float = 0.1,
    max_epochs: int = 300,
    batch_size: int | None = None,
    n_candidates: int | None = None,
    device: str = "auto",
    random_state: int = 0,
) -> tuple[sparse.csr_matrix, dict[str, Any]]:
    from .gradient import gradient_plan

    plan, info = gradient_plan(
        feats.sc,
        feats.sp_mapped,
        density=_spot_mass(feats, density),
        n_candidates=n_candidates,
        lambda_spot=lambda_spot,
        lambda_density=lambda_density,
        lambda_entropy=lambda_entropy,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        random_state=random_state,
        device=device,
    )
    info.update(
        density=density,
        lambda_spot=lambda_spot,
        lambda_density=lambda_density,
        lambda_entropy=lambda_entropy,
        lr=lr,
        max_epochs=max_epochs,
    )
    return plan, info


METHODS: dict[str, MethodSpec] = {
    "softmax": MethodSpec(
        "softmax",
        _run_softmax,
        "per-spot softmax over similar cells, perplexity-calibrated (semi-relaxed entropic OT)",
    ),
    "ot": MethodSpec("ot", _run_ot, "entropic optimal transport, balanced or unbalanced"),
    "fgw": MethodSpec(
        "fgw", _run_fgw, "fused Gromov-Wasserstein: expression cost plus spatial structure"
    ),
    "gradient": MethodSpec(
        "gradient",
        _run_gradient,
        "Tangram-like softmax mapping fitted by gradient descent (cosine + density prior)",
        features={"n_pcs": None, "scale": "mean", "normalize": "total"},
    ),
}


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``name`` (``"auto"`` is :data:`DEFAULT_METHOD`)."""
    key = DEFAULT_METHOD if name == "auto" else name
    if key not in METHODS:
        raise InputError(
            f"unknown mapping method {name!r}; choose among 'auto', {', '.join(map(repr, METHODS))}"
        )
    return METHODS[key]


def _split_params(spec: MethodSpec, params: dict[str, Any]) -> tuple[dict, dict]:
    # "None" (e.g. from the command line) means None
    params = {
        k: None if isinstance(v, str) and v.lower() == "none" else v for k, v in params.items()
    }
    feature = {**spec.features, **{k: v for k, v in params.items() if k in FEATURE_OPTIONS}}
    method = {k: v for k, v in params.items() if k not in FEATURE_OPTIONS}
    accepted = set(inspect.signature(spec.run).parameters) - {"feats", "adata_sp"}
    unknown = sorted(set(method) - accepted)
    if unknown:
        options = sorted((accepted - {"device", "random_state"}) | set(FEATURE_OPTIONS))
        raise InputError(
            f"method {spec.name!r} has no option(s) {', '.join(unknown)}; its options are "
            f"{', '.join(options)}"
        )
    return feature, method


# ---------------------------------------------------------------------------- map_cells


def _compute_mapping(
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    method: str,
    genes: Sequence[str] | None,
    layer_sc: str | None,
    layer_sp: str | None,
    random_state: int,
    device: str,
    params: dict[str, Any],
) -> Mapping:
    spec = get_method(method)
    feature_opts, method_opts = _split_params(spec, params)
    if isinstance(feature_opts.get("gene_weights"), str):
        feature_opts["gene_weights"] = _learn_weights(
            adata_sc,
            adata_sp,
            feature_opts,
            method=method,
            genes=genes,
            layer_sc=layer_sc,
            layer_sp=layer_sp,
            random_state=random_state,
            device=device,
            params=params,
        )
    start = time.perf_counter()
    feats = prepare_features(
        adata_sc,
        adata_sp,
        genes=genes,
        layer_sc=layer_sc,
        layer_sp=layer_sp,
        random_state=random_state,
        **feature_opts,
    )
    sub, info = spec.run(
        feats, adata_sp, device=device, random_state=int(random_state), **method_opts
    )
    # Back to every cell (rows) and every spot (columns) of the inputs.
    if feats.cell_used.all() and not feats.spot_empty.any():
        plan = sparse.csr_matrix(sub)
    else:
        cells = np.flatnonzero(feats.cell_used)
        spots = np.flatnonzero(~feats.spot_empty)
        coo = sparse.coo_matrix(sub)
        plan = sparse.csr_matrix(
            (coo.data, (cells[coo.row], spots[coo.col])), shape=(adata_sc.n_obs, adata_sp.n_obs)
        )
    plan.eliminate_zeros()
    params_out = {
        "method": spec.name,
        **info,
        "features": feats.params,
        "random_state": int(random_state),
        "seconds": time.perf_counter() - start,
    }
    return Mapping(
        plan=plan,
        cell_names=adata_sc.obs_names,
        spot_names=adata_sp.obs_names,
        genes=feats.genes,
        cell_totals=feats.cell_totals,
        spot_totals=feats.spot_totals,
        method=spec.name,
        params=params_out,
    )


def _learn_weights(
    adata_sc: AnnData,
    adata_sp: AnnData,
    feature_opts: dict[str, Any],
    *,
    method: str,
    genes: Sequence[str] | None,
    layer_sc: str | None,
    layer_sp: str | None,
    random_state: int,
    device: str,
    params: dict[str, Any],
) -> pd.Series:
    """``gene_weights="learned"``: map once unweighted, weigh genes by how well that mapping
    reproduces them (:func:`~cellweave.mapping.features.learned_gene_weights`)."""
    if feature_opts["gene_weights"] != "learned":
        raise InputError(
            f"gene_weights={feature_opts['gene_weights']!r}: pass 'learned', one weight per "
            "shared gene, or a mapping gene -> weight"
        )
    first = _compute_mapping(
        adata_sc,
        adata_sp,
        method=method,
        genes=genes,
        layer_sc=layer_sc,
        layer_sp=layer_sp,
        random_state=random_state,
        device=device,
        params={**params, "gene_weights": None},
    )
    used = list(first.genes)
    predicted = first.predict(_columns(adata_sc, used, layer_sc), scale="proportions")
    observed = to_dense(_columns(adata_sp, used, layer_sp))
    totals = observed.sum(axis=1, keepdims=True)
    observed = np.divide(observed, totals, out=np.zeros_like(observed), where=totals > 0)
    return pd.Series(learned_gene_weights(predicted, observed), index=used)


def map_cells(
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    method: str = "auto",
    genes: Sequence[str] | None = None,
    cell_type_key: str | None = None,
    layer_sc: str | None = None,
    layer_sp: str | None = None,
    random_state: int = 0,
    device: str = "auto",
    key_added: str = UNS_KEY,
    **params: Any,
) -> Mapping:
    """Map the cells of a scRNA-seq reference onto spots (or cells) of spatial data.

    Parameters
    ----------
    adata_sc
        Reference cells x genes (raw counts, or binarized / continuous non-negative values).
    adata_sp
        Spots x genes (counts or intensities), sharing genes with ``adata_sc``.
    method
        ``"auto"`` (= :data:`DEFAULT_METHOD`, ``"ot"``), ``"ot"``, ``"softmax"``,
        ``"fgw"`` or ``"gradient"`` (see the module docstring).
    genes
        Genes to map on (default: every shared gene).
    cell_type_key
        When given, also compute :func:`cell_type_fractions` from ``adata_sc.obs[key]``.
    layer_sc, layer_sp
        Layers to use instead of ``X``.
    random_state
        Seed; the same seed gives the same mapping.
    device
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    key_added
        The mapping is stored in ``adata_sp.uns[key_added]`` (plan, cell names, genes,
        totals, ``params``).
    **params
        Options of the method and of the features (see the module docstring).

    Returns
    -------
    The :class:`~cellweave.mapping.result.Mapping` (a sparse cells x spots plan).

    Raises
    ------
    NoSharedFeaturesError, DuplicateNamesError, MissingKeyError, EmptyDataError, InputError
        Unusable inputs; each message says how to fix them.

    Examples
    --------
    >>> mapping = cellweave.tl.map_cells(adata_sc, adata_sp)  # doctest: +SKIP
    >>> predicted = cellweave.tl.project_genes(adata_sp, adata_sc)  # doctest: +SKIP
    """
    if cell_type_key is not None:
        check_obs_key(adata_sc, cell_type_key, name="adata_sc")
    mapping = _compute_mapping(
        adata_sc,
        adata_sp,
        method=method,
        genes=genes,
        layer_sc=layer_sc,
        layer_sp=layer_sp,
        random_state=random_state,
        device=device,
        params=params,
    )
    adata_sp.uns[key_added] = mapping.to_uns()
    if cell_type_key is not None:
        cell_type_fractions(mapping, adata_sc, adata_sp, cell_type_key=cell_type_key)
    return mapping
