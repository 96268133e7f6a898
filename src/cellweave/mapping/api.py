"""``tl.map_cells`` and what follows from a mapping: genes, cell-type fractions, locations.

The solvers (``"ot"``, the default ``"auto"``; ``"softmax"``, ``"gradient"``, ``"fgw"``) are
adapters here, each declared with its options by one :func:`add_solver` call; the registry
(:data:`METHODS`, also holding the evaluation's baselines), the option check and the mapping
itself live in :mod:`.methods`. ``cellweave map --list-methods`` prints them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..errors import InputError, MissingKeyError, NoSharedFeaturesError
from ..registry import Choice, Float, Int, Text
from ..validate import check_obs_key, check_spatial
from .features import Features
from .methods import (
    DEFAULT_METHOD,
    FEATURE_OPTIONS,
    METHODS,
    SOLVER,
    _columns,
    add_solver,
    check_params,
    get_method,
)
from .methods import compute_mapping as _compute_mapping
from .result import FRACTIONS_KEY, Mapping, result_keys

__all__ = [
    "DEFAULT_METHOD",
    "EVALUATED_METHODS",
    "FEATURE_OPTIONS",
    "FRACTIONS_KEY",
    "METHODS",
    "cell_type_fractions",
    "check_params",
    "get_method",
    "map_cells",
    "predict_genes",
    "project_genes",
]

# Genes projected at once in project_genes (bounds the dense block in memory).
_GENE_BLOCK = 1024


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
    from .fgw import check_fgw_size, fused_gromov_wasserstein
    from .ot import _cosine_cost, _sparse_plan

    coords = check_spatial(adata_sp, spatial_key=spatial_key, name="adata_sp")
    coords = coords[~feats.spot_empty]
    check_fgw_size(len(feats.sc), len(coords))
    M = _cosine_cost(feats.sc, feats.sp_mapped)
    M = M / max(M.max(), 1e-12)
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
    return _sparse_plan(plan), info


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
        Float("lr", 0.1, low=0),
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
        Float("epsilon", 0.05, low=0, allow_none=True, doc="None: exact"),
        Int("n_neighbors", 5, low=1),
        Text("spatial_key", "spatial"),
        Int("max_iter", 20, low=1),
        Float("tol", 1e-7, low=0),
    ],
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
    random_state: int = 0,
    device: str = "auto",
    key_added: str | None = None,
    copy: bool = False,
    **params: Any,
) -> Mapping | AnnData:
    """Map the cells of a scRNA-seq reference onto spots (or cells) of spatial data.

    Parameters
    ----------
    adata_sc
        Reference cells x genes (raw counts, or binarized / continuous non-negative values).
        Never written to.
    adata_sp
        Spots x genes (counts or intensities), sharing genes with ``adata_sc``.
    method
        ``"auto"`` (= :data:`DEFAULT_METHOD`, ``"ot"``) or a solver of :data:`METHODS`:
        ``"ot"``, ``"softmax"``, ``"gradient"``, ``"fgw"`` (see the module docstring and
        ``cellweave map --list-methods``).
    genes
        Genes to map on (default: every shared gene).
    cell_type_key
        When given, also write the per-spot fractions of ``adata_sc.obs[cell_type_key]``
        (:meth:`Mapping.cell_type_fractions`). The per-cell most likely locations are
        written into the reference only by :func:`cell_type_fractions`, when asked.
    layer_sc, layer_sp
        Layers to use instead of ``X``.
    random_state
        Seed; the same seed gives the same mapping.
    device
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    key_added
        Names every key the call writes into ``adata_sp``: ``uns[key_added]`` (the sparse
        plan, cell names, genes, totals and ``params``) and, with ``cell_type_key``,
        ``obsm[f"{key_added}_fractions"]``. ``None`` (default): ``uns["mapping"]`` and
        ``obsm["cell_type_fractions"]``.
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
        Unusable inputs; each message says how to fix them.

    Examples
    --------
    >>> mapping = cellweave.tl.map_cells(adata_sc, adata_sp)  # doctest: +SKIP
    >>> predicted = cellweave.tl.project_genes(adata_sp, adata_sc)  # doctest: +SKIP
    """
    uns_key, fractions_key = result_keys(key_added)
    labels = None
    if cell_type_key is not None:
        labels = check_obs_key(adata_sc, cell_type_key, name="adata_sc")
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
    target = adata_sp.copy() if copy else adata_sp
    target.uns[uns_key] = mapping.to_uns()
    if labels is not None:
        fractions = mapping.cell_type_fractions(labels.to_numpy())
        fractions.index = target.obs_names
        target.obsm[fractions_key] = fractions
    return target if copy else mapping


def predict_genes(
    adata_sc: AnnData,
    adata_sp: AnnData,
    genes: Sequence[str],
    *,
    method: str = "auto",
    random_state: int = 0,
    scale: str = "counts",
    layer_sc: str | None = None,
    layer_sp: str | None = None,
    device: str = "auto",
    **params: Any,
) -> np.ndarray:
    """Predict ``genes`` at every spot from the reference, mapping on the other shared genes.

    The held-out ``genes`` are ignored in ``adata_sp`` even if present; the mapping uses the
    remaining shared genes. Nothing is written into the inputs.

    Parameters
    ----------
    adata_sc, adata_sp
        Reference and spatial data (see :func:`map_cells`).
    genes
        Genes of ``adata_sc`` to predict.
    method, random_state, layer_sc, layer_sp, device, **params
        See :func:`map_cells`.
    scale
        ``"counts"`` (default): expected values on the spatial data's scale (relative
        expression times each spot's total over the mapped genes); ``"proportions"``:
        relative expression only.

    Returns
    -------
    ``(adata_sp.n_obs, len(genes))`` float64 array.
    """
    genes = _reference_genes(adata_sc, genes, what="gene(s) to predict")
    train = _mapped_genes(adata_sc, adata_sp, genes)
    if len(train) < 2:
        raise NoSharedFeaturesError(
            f"adata_sp shares {len(train)} gene(s) with adata_sc besides the {len(genes)} to "
            "predict, but at least 2 are needed to map cells: check that both data sets name "
            "genes the same way"
        )
    mapping = _compute_mapping(
        adata_sc,
        adata_sp,
        method=method,
        genes=train,
        layer_sc=layer_sc,
        layer_sp=layer_sp,
        random_state=random_state,
        device=device,
        params=params,
    )
    return mapping.predict(_columns(adata_sc, genes, layer_sc), scale=scale)


# ---------------------------------------------------------------------------- outputs


def _reference_genes(adata_sc: AnnData, genes: Sequence[str], *, what: str) -> list[str]:
    """``genes`` as strings, raising :class:`MissingKeyError` when one is not in ``adata_sc``."""
    genes = [str(g) for g in genes]
    missing = [g for g in genes if g not in adata_sc.var_names]
    if missing:
        raise MissingKeyError(
            f"{len(missing)} {what} are not in adata_sc (e.g. {missing[:3]}): pass genes from "
            "adata_sc.var_names"
        )
    return genes


def _mapped_genes(adata_sc: AnnData, adata_sp: AnnData, held_out: Sequence[str]) -> list[str]:
    """The genes of ``adata_sp`` (in its order) also in ``adata_sc``, except ``held_out``: what
    :func:`predict_genes` maps on."""
    held_out = set(held_out)
    return [g for g in adata_sp.var_names if g in adata_sc.var_names and g not in held_out]


def _resolve(mapping_or_adata_sp: Mapping | AnnData, adata_sp: AnnData | None):
    if isinstance(mapping_or_adata_sp, Mapping):
        return mapping_or_adata_sp, adata_sp
    if isinstance(mapping_or_adata_sp, AnnData):
        return Mapping.from_adata(mapping_or_adata_sp), mapping_or_adata_sp
    raise InputError(
        f"expected a Mapping or the spatial AnnData, got {type(mapping_or_adata_sp).__name__}: "
        "pass the result of map_cells or the adata_sp it was run on"
    )


def _check_cells(mapping: Mapping, adata_sc: AnnData) -> None:
    if adata_sc.n_obs != mapping.n_cells or not adata_sc.obs_names.equals(mapping.cell_names):
        raise InputError(
            f"adata_sc ({adata_sc.n_obs} cells) is not the reference the mapping was computed "
            f"on ({mapping.n_cells} cells, same names and order required): pass that reference"
        )


def _check_spots(mapping: Mapping, adata_sp: AnnData) -> None:
    if adata_sp.n_obs != mapping.n_spots or not adata_sp.obs_names.equals(mapping.spot_names):
        raise InputError(
            f"adata_sp ({adata_sp.n_obs} spots) is not the spatial data the mapping was "
            f"computed on ({mapping.n_spots} spots): pass that data set"
        )


def project_genes(
    mapping_or_adata_sp: Mapping | AnnData,
    adata_sc: AnnData,
    *,
    genes: Sequence[str] | None = None,
    adata_sp: AnnData | None = None,
    scale: str = "counts",
    layer_sc: str | None = None,
    key_added: str | None = "predicted_genes",
) -> AnnData:
    """Predict reference genes at every spot through a mapping.

    Parameters
    ----------
    mapping_or_adata_sp
        The :class:`Mapping` returned by :func:`map_cells`, or the spatial AnnData holding it
        in ``uns["mapping"]``.
    adata_sc
        The reference the mapping was computed on.
    genes
        Genes of ``adata_sc`` to predict (default: all of them).
    adata_sp
        The spatial data (when a Mapping is passed first), to copy ``obs``/``obsm`` from and
        to write ``obsm[key_added]`` into.
    scale
        ``"counts"`` (expected values on the spatial scale) or ``"proportions"`` (relative
        expression); see :meth:`Mapping.predict`.
    layer_sc
        Layer of ``adata_sc`` to project instead of ``X``.
    key_added
        Write the predictions as a DataFrame to ``adata_sp.obsm[key_added]`` (``None``: do
        not write).

    Returns
    -------
    A new AnnData, spots x genes, with the predictions in ``X``, ``obs`` and ``obsm`` copied
    from ``adata_sp`` (when available) and ``uns["mapping_params"]``.
    """
    mapping, target = _resolve(mapping_or_adata_sp, adata_sp)
    _check_cells(mapping, adata_sc)
    if target is not None:
        _check_spots(mapping, target)
    if genes is None:
        genes = list(adata_sc.var_names)
    genes = _reference_genes(adata_sc, genes, what="gene(s)")
    blocks = [
        mapping.predict(_columns(adata_sc, genes[i : i + _GENE_BLOCK], layer_sc), scale=scale)
        for i in range(0, len(genes), _GENE_BLOCK)
    ]
    pred = np.hstack(blocks).astype(np.float32) if blocks else np.zeros((mapping.n_spots, 0))
    obs = target.obs.copy() if target is not None else pd.DataFrame(index=mapping.spot_names)
    out = AnnData(X=pred, obs=obs, var=pd.DataFrame(index=pd.Index(genes)))
    if target is not None:
        for key, value in target.obsm.items():
            out.obsm[key] = value
        if key_added is not None:
            target.obsm[key_added] = pd.DataFrame(pred, index=target.obs_names, columns=genes)
    out.var["measured"] = out.var_names.isin(mapping.genes)
    out.uns["mapping_params"] = {"method": mapping.method, "scale": scale}
    return out


def cell_type_fractions(
    mapping: Mapping | None,
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    cell_type_key: str,
    key_added: str = "cell_type_fractions",
    spatial_key: str = "spatial",
) -> pd.DataFrame:
    """Per-spot cell-type fractions and per-cell most likely location, from a mapping.

    Writes ``adata_sp.obsm[key_added]`` (DataFrame spots x types, rows sum to 1) and, in
    ``adata_sc.obs``, ``mapped_spot`` (most likely spot) and ``mapped_probability`` (its
    share of the cell's mass), plus ``adata_sc.obsm["spatial_mapped"]`` (that spot's
    coordinates; NaN for unmapped cells) when ``adata_sp.obsm[spatial_key]`` exists.

    Parameters
    ----------
    mapping
        The :class:`Mapping` (``None``: the one stored in ``adata_sp.uns["mapping"]``).
    adata_sc, adata_sp
        The data the mapping was computed on.
    cell_type_key
        Column of ``adata_sc.obs`` with the cell types.
    key_added
        Key of the fractions in ``adata_sp.obsm``.
    spatial_key
        Key of the spot coordinates.

    Returns
    -------
    The fractions DataFrame.
    """
    labels = check_obs_key(adata_sc, cell_type_key, name="adata_sc")
    mapping = Mapping.from_adata(adata_sp) if mapping is None else mapping
    _check_cells(mapping, adata_sc)
    _check_spots(mapping, adata_sp)
    fractions = mapping.cell_type_fractions(labels.to_numpy())
    fractions.index = adata_sp.obs_names
    adata_sp.obsm[key_added] = fractions
    coords = (
        np.asarray(adata_sp.obsm[spatial_key], dtype=np.float64)
        if spatial_key in adata_sp.obsm
        else None
    )
    location = mapping.cell_location(coords)
    adata_sc.obs["mapped_spot"] = location["spot"].to_numpy()
    adata_sc.obs["mapped_probability"] = location["probability"].to_numpy()
    if coords is not None:
        adata_sc.obsm["spatial_mapped"] = location.drop(columns=["spot", "probability"]).to_numpy()
    return fractions
