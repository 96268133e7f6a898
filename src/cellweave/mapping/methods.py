"""The mapping registry: every method ``map_cells`` and the evaluation know, with options.

:data:`METHODS` (a :class:`cellweave.registry.Registry`) holds the solvers ``map_cells`` runs
(kind ``"solver"``, declared next to their adapters in :mod:`.api` with :func:`add_solver`),
the baselines of the leave-gene-out evaluation (kind ``"baseline"``, declared here) and the
peers added at run time (kind ``"peer"``, :func:`.predictors.register_method`).
:func:`check_params` checks a call's options against the declarations before any work;
:func:`compute_mapping` then maps. ``cellweave map --list-methods`` prints the table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ..device import check_device
from ..errors import InvalidOptionError
from ..registry import Bool, Choice, Float, Int, Method, Option, Registry
from ..validate import check_min_obs, check_spatial, is_counts
from . import baselines
from .features import (
    MAX_GENES,
    check_inputs,
    learned_gene_weights,
    prepare_features,
    to_dense,
)
from .genes import _columns
from .result import Mapping

__all__ = [
    "DEFAULT_METHOD",
    "FEATURE_OPTIONS",
    "FRACTIONS_FALLBACK",
    "FRACTIONS_METHOD",
    "METHODS",
    "MIN_OBS",
    "SOLVER",
    "add_solver",
    "check_params",
    "compute_mapping",
    "get_method",
    "inputs_are_counts",
    "resolve_method",
]

#: The method ``map_cells`` uses for ``method="auto"`` (measured best; ``docs/mapping.md``).
DEFAULT_METHOD = "ot"
#: The method ``map_cells`` uses for ``method="auto"`` when it also writes cell-type fractions
#: (``cell_type_key`` given) and both inputs hold raw counts: the measured best for fractions
#: (``bench_deconv.py``; the "Deconvolution" section of ``benchmarks/results/mapping.md``):
#: the attention mapper, better than ``"gradient"``, ``"ot"`` and Tangram on both truth sets
#: and every score. It needs raw counts, so inputs that are not counts get
#: :data:`FRACTIONS_FALLBACK`.
FRACTIONS_METHOD = "attention"
#: The fractions default for inputs :data:`FRACTIONS_METHOD` refuses (values that are not
#: raw counts, e.g. normalized or intensity data): it accepts any non-negative expression.
FRACTIONS_FALLBACK = "gradient"
#: Kind of the entries of :data:`METHODS` that ``map_cells`` runs (the others, ``"baseline"``
#: and ``"peer"``, are gene predictors for the leave-gene-out evaluation).
SOLVER = "solver"
#: Fewest cells in the reference and fewest spots a mapping accepts (with one of either
#: every cell goes to the one spot, or the one cell is the whole answer).
MIN_OBS = 2
#: Arguments ``map_cells`` passes to every solver besides its options.
FIXED = ("device", "random_state")

#: Options of :func:`prepare_features`, accepted by every solver.
FEATURE_OPTIONS_DECLARED: tuple[Option, ...] = (
    Choice("normalize", "log_total", ("log_total", "total", "log", "none"), allow_none=True),
    Choice("scale", True, (True, False, "mean")),
    Int("n_pcs", 30, low=1, allow_none=True),
    Int("denoise", 0, low=0),
    Option("gene_weights", object, None, doc="'learned', one weight per gene, or gene -> weight"),
    Int("max_genes", MAX_GENES, low=1, allow_none=True),
)
#: Names of :data:`FEATURE_OPTIONS_DECLARED`.
FEATURE_OPTIONS = tuple(option.name for option in FEATURE_OPTIONS_DECLARED)

#: Every mapping method (see the module docstring).
METHODS = Registry("mapping method")


def add_solver(
    name: str,
    runner: Any,
    description: str,
    options: list[Option],
    *,
    reference: bool = False,
    **features: Any,
) -> None:
    """Register a solver: its own options plus the feature options, whose defaults are
    ``features`` where given (the feature settings the solver starts from). With
    ``reference=True`` the runner also gets ``reference=`` (a dict: ``adata_sc``,
    ``cell_type_key``, ``layer_sc``, ``layer_sp``), for a model of the reference itself."""
    shared = [replace(o, default=features.get(o.name, o.default)) for o in FEATURE_OPTIONS_DECLARED]
    METHODS.add(
        name,
        runner,
        kind=SOLVER,
        description=description,
        options=[*options, *shared],
        features=features,
        reference=reference,
    )


METHODS.add(
    "depth",
    baselines.depth,
    kind="baseline",
    description="the spot's total over its genes times the gene's reference share (depth only)",
)
METHODS.add(
    "knn",
    baselines.knn,
    kind="baseline",
    description="average of the spot's nearest reference cells in a shared normalised space",
    options=[Int("n_neighbors", 15, low=1)],
)
METHODS.add(
    "spage",
    baselines.spage,
    kind="baseline",
    description="SpaGE: principal-vector domain adaptation, then a weighted kNN",
    options=[
        Int("n_pv", None, low=1, allow_none=True),
        Int("n_neighbors", 50, low=1),
        Float("min_cosine", 0.3, low=-1, high=1),
        Bool("normalize", True),
    ],
)


def get_method(name: str) -> Method:
    """The solver called ``name`` (``"auto"`` is :data:`DEFAULT_METHOD`), or an
    ``InvalidOptionError`` listing the solvers."""
    key = DEFAULT_METHOD if name == "auto" else name
    if key not in METHODS or METHODS[key].kind != SOLVER:
        solvers = ", ".join(map(repr, METHODS.names(SOLVER)))
        raise InvalidOptionError(f"unknown mapping method {name!r}; choose among 'auto', {solvers}")
    return METHODS[key]


def resolve_method(
    method: str,
    *,
    cell_type_key: str | None = None,
    params: dict[str, Any] | None = None,
    counts: bool = True,
) -> str:
    """The solver ``method="auto"`` stands for (any other name is returned as it is).

    With a ``cell_type_key`` (fractions are asked for) it is :data:`FRACTIONS_METHOD` when
    the inputs are raw ``counts`` (:func:`inputs_are_counts`; ``True`` when not yet known),
    else :data:`FRACTIONS_FALLBACK`; a solver is only chosen when it declares every option in
    ``params`` (the other one is tried next; options of neither, e.g. ``epsilon`` of
    ``"ot"``, pick :data:`DEFAULT_METHOD`). Without one it is :data:`DEFAULT_METHOD`, the
    best for predicting genes.
    """
    if method != "auto":
        return method
    if cell_type_key is None:
        return DEFAULT_METHOD
    order = (FRACTIONS_METHOD, FRACTIONS_FALLBACK)
    for solver in order if counts else order[::-1]:
        if solver in METHODS and set(params or {}) <= set(METHODS[solver].options):
            return solver
    return DEFAULT_METHOD


def inputs_are_counts(
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    layer_sc: str | None = None,
    layer_sp: str | None = None,
) -> bool:
    """Whether the reference and the spatial values (``X`` or the layers) both look like raw
    counts (:func:`cellweave.validate.is_counts`): what :data:`FRACTIONS_METHOD` needs."""
    pairs = ((adata_sc, layer_sc), (adata_sp, layer_sp))
    return all(
        is_counts(a.X if layer is None else a.layers[layer])
        for a, layer in pairs
        if layer is None or layer in a.layers
    )


def check_params(method: str, params: dict[str, Any]) -> tuple[Method, dict, dict]:
    """The solver of ``method`` and ``params`` checked against its declared options, split
    into feature options (over the solver's feature defaults) and solver options.

    The string ``"None"`` (e.g. from the command line) means ``None``. An unknown or invalid
    option is an :class:`~cellweave.errors.InvalidOptionError` naming the valid ones.
    """
    spec = get_method(method)
    params = {
        k: None if isinstance(v, str) and v.lower() == "none" else v for k, v in params.items()
    }
    unknown = sorted(set(params) - set(spec.options))
    if unknown:
        raise InvalidOptionError(
            f"method {spec.name!r} has no option(s) {', '.join(unknown)}; its options are "
            f"{', '.join(sorted(spec.options))}"
        )
    checked = {}
    for key, value in params.items():
        option = spec.options[key]
        try:
            checked[key] = option.check(value, owner=f"mapping method {spec.name!r}")
        except InvalidOptionError:
            words = option.expects().removeprefix("pass ")
            raise InvalidOptionError(
                f"mapping method {spec.name!r}: {key} must be {words}, got {value!r}"
            ) from None
    given = {k: v for k, v in checked.items() if k in FEATURE_OPTIONS}
    solver = {k: v for k, v in checked.items() if k not in FEATURE_OPTIONS}
    return spec, {**spec.meta["features"], **given}, solver


def compute_mapping(
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
    cell_type_key: str | None = None,
) -> Mapping:
    """Check ``params`` against the solver's declared options, the device, then the data
    (at least :data:`MIN_OBS` cells and spots; coordinates of a solver that uses them; the
    values and shared genes, :func:`~.features.check_inputs`), all before any work and the
    same for every solver; then map (``cell_type_key`` goes to the solvers that model cell
    types, those registered with ``reference=True``)."""
    spec, feature_opts, method_opts = check_params(method, params)
    check_device(device)
    check_min_obs(adata_sc, MIN_OBS, what="cells", name="adata_sc")
    check_min_obs(adata_sp, MIN_OBS, what="spots", name="adata_sp")
    if "spatial_key" in spec.options:  # a solver that uses the spots' coordinates
        key = method_opts.get("spatial_key", spec.options["spatial_key"].default)
        if key is not None:
            fix = "or spatial_key=None to map without them"
            check_spatial(
                adata_sp, spatial_key=key, allow_degenerate=False, fix=fix, name="adata_sp"
            )
    check_inputs(
        adata_sc,
        adata_sp,
        genes=genes,
        layer_sc=layer_sc,
        layer_sp=layer_sp,
        normalize=feature_opts.get("normalize", "log_total"),
    )
    data = _Inputs(adata_sc, adata_sp, genes, layer_sc, layer_sp, int(random_state), device)
    data.cell_type_key = cell_type_key
    if isinstance(feature_opts.get("gene_weights"), str):
        feature_opts["gene_weights"] = _learn_weights(data, spec, feature_opts, method_opts)
    return _solve(data, spec, feature_opts, method_opts)


class _Inputs:
    """The data and settings of one mapping, passed together to :func:`_solve`."""

    def __init__(self, adata_sc, adata_sp, genes, layer_sc, layer_sp, random_state, device):
        self.adata_sc, self.adata_sp, self.genes = adata_sc, adata_sp, genes
        self.layer_sc, self.layer_sp = layer_sc, layer_sp
        self.random_state, self.device = random_state, device
        self.cell_type_key: str | None = None


def _solve(data: _Inputs, spec: Method, feature_opts: dict, method_opts: dict) -> Mapping:
    """Features, the solver's plan, and the plan back on every cell and spot of the inputs
    (options already checked)."""
    adata_sc, adata_sp = data.adata_sc, data.adata_sp
    start = time.perf_counter()
    feats = prepare_features(
        adata_sc,
        adata_sp,
        genes=data.genes,
        layer_sc=data.layer_sc,
        layer_sp=data.layer_sp,
        random_state=data.random_state,
        warn=False,  # check_inputs warned once
        **feature_opts,
    )
    extra = {}
    if spec.meta.get("reference"):  # a solver that models the reference itself
        extra["reference"] = {
            "adata_sc": adata_sc,
            "cell_type_key": data.cell_type_key,
            "layer_sc": data.layer_sc,
            "layer_sp": data.layer_sp,
        }
    sub, info = spec.runner(
        feats, adata_sp, device=data.device, random_state=data.random_state, **extra, **method_opts
    )
    outputs = info.pop("outputs", {})
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
        "random_state": data.random_state,
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
        outputs=outputs,
    )


def _learn_weights(
    data: _Inputs, spec: Method, feature_opts: dict[str, Any], method_opts: dict[str, Any]
) -> pd.Series:
    """``gene_weights="learned"``: map once unweighted, weigh genes by how well that mapping
    reproduces them (:func:`~cellweave.mapping.features.learned_gene_weights`)."""
    if feature_opts["gene_weights"] != "learned":
        raise InvalidOptionError(
            f"gene_weights={feature_opts['gene_weights']!r}: pass 'learned', one weight per "
            "shared gene, or a mapping gene -> weight"
        )
    first = _solve(data, spec, {**feature_opts, "gene_weights": None}, method_opts)
    used = list(first.genes)
    predicted = first.predict(_columns(data.adata_sc, used, data.layer_sc), scale="proportions")
    observed = to_dense(_columns(data.adata_sp, used, data.layer_sp))
    totals = observed.sum(axis=1, keepdims=True)
    observed = np.divide(observed, totals, out=np.zeros_like(observed), where=totals > 0)
    return pd.Series(learned_gene_weights(predicted, observed), index=used)
