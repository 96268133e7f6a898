"""``tl.map_cells`` and what follows from a mapping: genes, cell-type fractions, locations.

The solvers (``"ot"``, the default ``"auto"``; ``"softmax"``, ``"gradient"``, ``"fgw"``,
``"attention"``) are adapters here, each declared with its options by one :func:`add_solver`
call; the registry
(:data:`METHODS`, also holding the evaluation's baselines), the option check and the mapping
itself live in :mod:`.methods`. ``cellweave map --list-methods`` prints them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._params import jsonable
from ..device import check_device
from ..errors import InputError
from ..graph import nearest_neighbors
from ..registry import Bool, Choice, Float, Int, Text
from ..train import checkpointing
from ..validate import check_labels, check_obs_key, check_seed, check_spatial
from .attention.options import MODEL_OPTIONS as ATTENTION_MODEL_OPTIONS
from .attention.options import TRAIN_OPTIONS as ATTENTION_TRAIN_OPTIONS
from .features import Features
from .fractions import cell_type_fractions
from .gene_case import check_gene_case, match_gene_case
from .genes import predict_genes, project_genes
from .methods import (
    DEFAULT_METHOD,
    FEATURE_OPTIONS,
    FRACTIONS_FALLBACK,
    FRACTIONS_METHOD,
    METHODS,
    MIN_OBS,
    SOLVER,
    add_solver,
    check_params,
    get_method,
    inputs_are_counts,
    resolve_method,
)
from .methods import compute_mapping as _compute_mapping
from .result import FRACTIONS_KEY, Mapping, output_keys, result_keys

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_METHOD",
    "EVALUATED_METHODS",
    "FEATURE_OPTIONS",
    "FRACTIONS_FALLBACK",
    "FRACTIONS_KEY",
    "FRACTIONS_METHOD",
    "METHODS",
    "MIN_OBS",
    "cell_type_fractions",
    "check_params",
    "get_method",
    "map_cells",
    "predict_genes",
    "project_genes",
    "resolve_method",
]


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

    k = int(min(n_neighbors, len(points) - 1))
    dist, idx = nearest_neighbors(points, k + 1, backend="kdtree")
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
    feats: Features, adata_sp: AnnData, *, density: str = "uniform", **options: Any
) -> tuple[sparse.csr_matrix, dict[str, Any]]:
    """:func:`~cellweave.mapping.gradient.gradient_plan` with the spot masses of
    ``density``; ``options`` (its loss weights, training, ``device``, ``random_state``) and
    their defaults are that function's own."""
    from .gradient import gradient_plan

    plan, info = gradient_plan(
        feats.sc, feats.sp_mapped, density=_spot_mass(feats, density), **options
    )
    return plan, {**info, "density": density}


def _run_attention(
    feats: Features,
    adata_sp: AnnData,
    reference: dict[str, Any] | None = None,
    *,
    require_counts: bool = True,
    device: str = "auto",
    random_state: int = 0,
    **options: Any,
) -> tuple[sparse.csr_matrix, dict[str, Any]]:
    """:class:`~cellweave.mapping.attention.AttentionMapper` on ``feats.genes``, trained
    and mapped; ``options`` are the model's and its training's own, their defaults those
    of the class (``reference``: the reference, its cell types and layers, from
    :func:`map_cells`)."""
    from .attention import AttentionMapper

    ref = reference or {}
    train = {o.name: options.pop(o.name) for o in ATTENTION_TRAIN_OPTIONS if o.name in options}
    model = AttentionMapper(
        ref["adata_sc"],
        adata_sp,
        cell_type_key=ref.get("cell_type_key"),
        genes=feats.genes,
        layer_sc=ref.get("layer_sc"),
        layer_sp=ref.get("layer_sp"),
        require_counts=require_counts,
        warn=False,  # map_cells warned once about spots without counts
        **options,
    )
    model.train(**train, device=device, random_state=random_state)
    mapping = model.map()
    plan = mapping.plan[np.flatnonzero(feats.cell_used)][:, np.flatnonzero(~feats.spot_empty)]
    info = {**model.train_params, **model.options, "require_counts": require_counts}
    return plan, {**info, "outputs": {**mapping.outputs, "model": model}}


# ---------------------------------------------------------------------------- registry
# Each solver above, declared with its options (the feature options are added to each).

add_solver(
    "ot",
    _run_ot,
    "entropic optimal transport, balanced or unbalanced",
    [
        Float("epsilon", 0.15, low=0),
        Float("unbalanced", 0.1, low=0, allow_none=True, doc="None: balanced"),
        Choice("spot_mass", "uniform", ("uniform", "counts")),
        Int("n_candidates", 50, low=1, allow_none=True),
        Int("max_iter", 2000, low=1),
        Float("tol", 1e-6, low=0),
    ],
)
add_solver(
    "softmax",
    _run_softmax,
    "per-spot softmax over similar cells, perplexity-calibrated (semi-relaxed entropic OT)",
    [Float("perplexity", 50.0, low=1), Int("n_candidates", None, low=1, allow_none=True)],
)
add_solver(
    "gradient",
    _run_gradient,
    "Tangram-like softmax mapping fitted by gradient descent (cosine + density prior)",
    [
        Choice("density", "uniform", ("uniform", "counts")),
        Float("lambda_spot", 1.0, low=0),
        Float("lambda_density", 1.0, low=0),
        Float("lambda_entropy", 0.0),
        Float("lr", 0.1, low=0, low_open=True),
        Int("max_epochs", 300, low=1),
        Int("batch_size", None, low=1, allow_none=True),
        Int("n_candidates", None, low=1, allow_none=True),
    ],
    n_pcs=None,
    scale="mean",
    normalize="total",
)
add_solver(
    "fgw",
    _run_fgw,
    "fused Gromov-Wasserstein: expression cost plus spatial structure",
    [
        Float("alpha", 0.5, low=0, high=1),
        Float("epsilon", 0.05, low=0, low_open=True, allow_none=True, doc="None: exact"),
        Int("n_neighbors", 5, low=1),
        Text("spatial_key", "spatial"),
        Int("max_iter", 20, low=1),
        Float("tol", 1e-7, low=0),
    ],
)
add_solver(
    "attention",
    _run_attention,
    "multi-view attention model: spots' views fused, attention over reference cells, "
    "count likelihood",
    [*ATTENTION_MODEL_OPTIONS, *ATTENTION_TRAIN_OPTIONS, Bool("require_counts", True)],
    reference=True,
)
#: cellweave's methods that the leave-gene-out evaluation runs for ``methods="all"``.
EVALUATED_METHODS = tuple(METHODS.names(SOLVER))


# ---------------------------------------------------------------------------- map_cells


def map_cells(
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    method: str = "auto",
    genes: Sequence[str] | None = None,
    cell_type_key: str | None = None,
    layer_sc: str | None = None,
    layer_sp: str | None = None,
    gene_case: str = "exact",
    random_state: int = 0,
    device: str = "auto",
    key_added: str | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    copy: bool = False,
    **params: Any,
) -> Mapping | AnnData:
    """Map the cells of a scRNA-seq reference onto spots (or cells) of spatial data.

    Parameters
    ----------
    adata_sc
        Reference cells x genes (raw counts, or binarized / continuous non-negative values).
        Never written to, except by ``method="attention"``, which writes the cells' latent
        into ``adata_sc.obsm["X_cellweave"]`` (that key only).
    adata_sp
        Spots x genes (counts or intensities), sharing genes with ``adata_sc``.
    method
        ``"auto"`` or a solver of :data:`METHODS`: ``"ot"``, ``"softmax"``, ``"gradient"``,
        ``"fgw"``, ``"attention"`` (see the module docstring and ``cellweave map
        --list-methods``). ``"auto"`` is :data:`DEFAULT_METHOD` (the best for predicting
        genes), and with a ``cell_type_key`` :data:`FRACTIONS_METHOD` (the measured best for
        cell-type fractions of spots that mix cells; both named in :mod:`cellweave.mapping`)
        when both inputs hold raw counts, else :data:`FRACTIONS_FALLBACK` (which accepts any
        non-negative values), unless ``params`` holds options only another solver declares
        (:func:`~cellweave.mapping.methods.resolve_method`); what it chose is in
        ``uns[key_added]["params"]`` (``method``, and ``auto``). ``"attention"`` (the
        multi-view attention model, :class:`~cellweave.mapping.attention.AttentionMapper`; raw
        counts required) also writes the spots' latent ``adata_sp.obsm["X_cellweave"]`` and
        the per-spot view weights ``adata_sp.obsm["view_weights"]`` (DataFrame spots x views
        among ``panel``, ``neighbours``, ``histology``, ``modality``; rows sum to 1), and uses
        ``cell_type_key`` for its type level.
    genes
        Genes to map on (default: every shared gene).
    cell_type_key
        When given, also write the per-spot fractions of ``adata_sc.obs[cell_type_key]``
        (:meth:`Mapping.cell_type_fractions`). The per-cell most likely locations are
        written into the reference only by :func:`cell_type_fractions`, when asked.
    layer_sc, layer_sp
        Layers to use instead of ``X``.
    gene_case
        How gene names are matched: ``"exact"`` (default; the warning or error names this
        option when names match only up to case), ``"insensitive"`` (up to case; the
        mapping's genes take ``adata_sp``'s spelling), ``"upper"`` / ``"lower"`` (both data
        sets' names upper- / lower-cased first, as Tangram does). Two genes of one data set
        equal up to case are refused. See :mod:`cellweave.mapping.gene_case`.
    random_state
        Seed; the same seed gives the same mapping.
    device
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or
        ``"mps"`` (checked before any work, see :func:`cellweave.device.parse_device`).
    key_added
        Names every key the call writes into ``adata_sp``: ``uns[key_added]`` (the sparse
        plan, cell names, genes, totals and ``params``) and, with ``cell_type_key``,
        ``obsm[f"{key_added}_fractions"]`` (and ``obsm[f"{key_added}_view_weights"]`` for
        ``"attention"``). ``None`` (default): ``uns["mapping"]`` and
        ``obsm["cell_type_fractions"]``.
    checkpoint_dir, resume
        The trained solvers (``"gradient"``, ``"attention"``) write a checkpoint after every
        epoch into ``checkpoint_dir/fit-000``; ``resume=True`` continues a killed run from
        it (same result as an uninterrupted run). The other methods ignore them.
    copy
        Write into a copy of ``adata_sp`` and return it (``adata_sp`` is left unchanged);
        otherwise write in place and return the :class:`Mapping`.
    **params
        Options of the method and of the features (declared with their types and ranges in
        :data:`METHODS`; an unknown or invalid one is refused before any work).

    Returns
    -------
    The :class:`~cellweave.mapping.result.Mapping` (a sparse cells x spots plan), or with
    ``copy=True`` the changed copy of ``adata_sp``.

    Raises
    ------
    InvalidOptionError
        Unknown method, unknown option, or a value of the wrong type or out of range.
    NoSharedFeaturesError, DuplicateNamesError, MissingKeyError, EmptyDataError, InputError
        Unusable inputs, before any work: fewer than :data:`MIN_OBS` cells or spots, a
        ``cell_type_key`` column with fewer than 2 cell types, missing or degenerate spot
        coordinates for a method that uses them (``fgw``), ...; each message names the fix.

    Examples
    --------
    >>> mapping = cellweave.tl.map_cells(adata_sc, adata_sp)  # doctest: +SKIP
    >>> predicted = cellweave.tl.project_genes(adata_sp, adata_sc)  # doctest: +SKIP
    """
    result_keys(key_added)  # a bad key_added before any work
    check_seed(random_state)
    counts = method == "auto" and cell_type_key is not None
    if counts:  # the fractions default needs raw counts: else its fallback
        counts = inputs_are_counts(adata_sc, adata_sp, layer_sc=layer_sc, layer_sp=layer_sp)
    solver = resolve_method(method, cell_type_key=cell_type_key, params=params, counts=counts)
    check_params(solver, params)  # the options and the device first, then the data
    check_gene_case(gene_case)
    check_device(device)
    matched_sc, matched_sp = match_gene_case(adata_sc, adata_sp, gene_case)
    labels = reference_labels(adata_sc, cell_type_key)
    run = None
    if checkpoint_dir is not None:
        names = [adata_sc.obs_names, adata_sp.obs_names, adata_sc.var_names, adata_sp.var_names]
        run = {"method": solver, "genes": genes, "params": jsonable(params), "seed": random_state}
        run["names"] = [
            hashlib.sha256("\x1f".join(map(str, n)).encode()).hexdigest() for n in names
        ]
    with checkpointing(checkpoint_dir, resume=resume, fingerprint=run):
        mapping = _compute_mapping(
            matched_sc,
            matched_sp,
            method=solver,
            genes=genes,
            layer_sc=layer_sc,
            layer_sp=layer_sp,
            random_state=random_state,
            device=device,
            params=params,
            cell_type_key=cell_type_key,
        )
    if gene_case != "exact":
        mapping.params["gene_case"] = gene_case
    if method == "auto":
        mapping.params["auto"] = {
            "chose": solver,
            "for": "genes"
            if cell_type_key is None or solver == DEFAULT_METHOD
            else "cell-type fractions",
        }
    return store_mapping(mapping, adata_sc, adata_sp, labels, key_added=key_added, copy=copy)


def reference_labels(adata_sc: AnnData, cell_type_key: str | None) -> pd.Series | None:
    """``adata_sc.obs[cell_type_key]`` checked (present, two or more types), or ``None``."""
    if cell_type_key is None:
        return None
    return check_labels(
        check_obs_key(adata_sc, cell_type_key, name="adata_sc"),
        where=f"adata_sc.obs[{cell_type_key!r}]",
        fix="pass a cell_type_key column with at least 2 cell types, or none",
    )


def store_mapping(
    mapping: Mapping,
    adata_sc: AnnData,
    adata_sp: AnnData,
    labels: pd.Series | None,
    *,
    key_added: str | None = None,
    copy: bool = False,
) -> Mapping | AnnData:
    """Write ``mapping`` into ``adata_sp`` (or its copy) as :func:`map_cells` does: the plan
    in ``uns``, the fractions of ``labels`` in ``obsm`` and a model solver's outputs."""
    uns_key, fractions_key = result_keys(key_added)
    target = adata_sp.copy() if copy else adata_sp
    target.uns[uns_key] = mapping.to_uns()
    if labels is not None:
        fractions = mapping.cell_type_fractions(labels.to_numpy())
        fractions.index = target.obs_names
        target.obsm[fractions_key] = fractions
    _write_outputs(mapping, adata_sc, target, key_added)
    return target if copy else mapping


#: Key of the spots' and the reference cells' latent written by a model solver.
LATENT_KEY = "X_cellweave"


def _write_outputs(
    mapping: Mapping, adata_sc: AnnData, target: AnnData, key_added: str | None
) -> None:
    """A model solver's outputs: the spots' latent and view weights into ``target``, the
    cells' latent into ``adata_sc.obsm["X_cellweave"]`` (the one key written there)."""
    outputs = mapping.outputs
    if "latent" in outputs:
        target.obsm[LATENT_KEY] = np.asarray(outputs["latent"])
    if "view_weights" in outputs:
        frame = outputs["view_weights"].copy()
        frame.index = target.obs_names
        target.obsm[output_keys(key_added)["views_key"]] = frame
    if "cell_latent" in outputs:
        adata_sc.obsm[LATENT_KEY] = np.asarray(outputs["cell_latent"])
