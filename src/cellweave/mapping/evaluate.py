"""Leave-gene-out evaluation of gene prediction from scRNA-seq (SpatialBenchmarking protocol).

Protocol (Li et al. 2022, *Nature Methods* 19, 662-670; github.com/QuKunLab/SpatialBenchmarking):

1. shared genes = the intersection of the two data sets' ``var_names`` (sorted, so that the
   split does not depend on the files' gene order);
2. they are shuffled with ``numpy.random.default_rng(random_state)`` (``random_state=0`` by
   default) and split into ``folds`` consecutive parts (``numpy.array_split``: every gene is
   held out exactly once);
3. for each fold every method sees the spatial data restricted to the fold's *training*
   genes (raw values as given, coordinates kept) and the full scRNA-seq data, and predicts the
   held-out genes at every spot (a *gene predictor*, see :data:`Predictor`);
4. each held-out gene is scored with :func:`cellweave.metrics.spatial.gene_scores` (PCC, SSIM
   on max-scaled vectors, RMSE of z-scores, JS of sum-normalised vectors: the reference
   ``Benchmarking/GenesMetrics.py`` formulas) and methods are ranked by the accuracy score
   (:func:`cellweave.metrics.spatial.accuracy_score`, mean over genes per metric as in the
   reference ``AccuracyMetrics.ipynb``).

Two schemes (``scheme=``), scored on the same runs:

``"normalized"`` (primary)
    The truth at spot ``i`` is its value divided by spot ``i``'s total over the fold's
    training genes, ``x_ig / T_i``, so that sequencing depth cannot pass for prediction.
    Spots with ``T_i = 0`` are left out of that fold's scores. **Predictions are scored as
    returned, not divided by** ``T_i``. All four scores are invariant to a positive factor
    per gene, so "the same scale" is only a question of per-spot factors, and dividing would
    not be neutral: it would turn a count-scale prediction ``T_i f_ig`` into ``f_ig`` (giving
    methods that predict counts the depth correction for free) while giving every depth-free
    prediction (SpaGE, novoSpaRc, a kNN average of normalised cells) a spurious ``1 / T_i``.
    Instead a method may return one prediction per scheme (see :class:`Predictor`): its
    relative expression here and values on the spatial data's scale for the raw scheme.
    The ``depth`` baseline (``T_i`` times a gene constant) is scored as the correlation of
    depth with relative expression, about zero. (SpaGE called on raw values, as in
    SpatialBenchmarking, reproduces the issue's reference medians under this rule.)
``"raw"``
    The truth is the raw value ``x_ig`` (the paper's scheme), where depth alone can score
    well on sequencing data (see the ``depth`` baseline).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import validate
from .._params import jsonable
from .._progress import track
from .._utils import to_dense
from ..errors import InputError
from ..io import atomic_path
from ..metrics.spatial import METRICS, accuracy_score, gene_scores
from . import api
from . import features as _features
from .predictors import (
    MappingMethod,
    Predictor,
    available_methods,
    checked_options,
    register_method,
)

__all__ = [
    "MappingEvaluation",
    "MappingMethod",
    "Predictor",
    "available_methods",
    "evaluate",
    "fold_split",
    "normalized_truth",
    "register_method",
    "shared_genes",
]

Scheme = Literal["normalized", "raw"]
SCHEMES: tuple[Scheme, ...] = ("normalized", "raw")
#: Columns of :attr:`MappingEvaluation.table` holding per-gene medians (and their metric).
SCORE_COLUMNS = {"pcc": "PCC", "ssim": "SSIM", "rmse": "RMSE", "js": "JS"}
#: Method that is always evaluated (the depth-only reference).
ALWAYS = ("depth",)


def _resolve_methods(
    methods: str | Sequence[str] | Mapping[str, Any],
    method_params: Mapping[str, Mapping[str, Any]] | None,
) -> list[MappingMethod]:
    known = available_methods()
    if isinstance(methods, Mapping):
        chosen = {}
        for name, value in methods.items():
            if isinstance(value, MappingMethod):
                chosen[name] = MappingMethod(name, value.kind, value.predict, value.params)
            elif callable(value):
                kind = known[name].kind if name in known else "peer"
                chosen[name] = MappingMethod(name, kind, value)
            else:
                raise InputError(
                    f"methods[{name!r}] is {type(value).__name__}: pass a gene predictor "
                    "(callable) or a MappingMethod"
                )
    else:
        if isinstance(methods, str):
            names = (
                list(known)
                if methods == "all"
                else [n.strip() for n in methods.split(",") if n.strip()]
            )
        else:
            names = list(methods)
        default = api.DEFAULT_METHOD
        names = [default if n == "auto" and default in known else n for n in names]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(
                f"unknown mapping method(s) {', '.join(map(repr, unknown))}; choose among "
                f"{', '.join(known)} (peers are registered by benchmarks/peers_mapping.py)"
            )
        chosen = {n: known[n] for n in names}
    for name in ALWAYS:
        if name not in chosen:
            chosen[name] = known[name]
    if not chosen:
        raise InputError("methods is empty; pass 'all' or at least one method name")
    params = dict(method_params or {})
    stray = sorted(set(params) - set(chosen))
    if stray:
        raise InputError(
            f"method_params names method(s) {', '.join(stray)} that are not evaluated; use "
            f"names among {', '.join(chosen)}"
        )
    params = {name: checked_options(name, chosen[name], opts) for name, opts in params.items()}
    return [
        MappingMethod(m.name, m.kind, m.predict, {**m.params, **params.get(m.name, {})})
        for m in chosen.values()
    ]


# ----------------------------------------------------------------------------- protocol


def shared_genes(adata_sc: AnnData, adata_sp: AnnData, *, min_shared: int = 2) -> pd.Index:
    """Sorted intersection of the two data sets' gene names (step 1 of the protocol)."""
    shared = _features.shared_genes(adata_sc, adata_sp, min_shared=min_shared)
    return pd.Index(sorted(shared), name="gene")


def fold_split(genes: Sequence[str], folds: int, *, random_state: int = 0) -> list[list[str]]:
    """Shuffle ``genes`` with ``numpy.random.default_rng(random_state)`` and split them into
    ``folds`` parts (``numpy.array_split``); every gene lands in exactly one fold."""
    genes = np.asarray(list(genes), dtype=object)
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise InputError(f"folds={folds!r} must be an integer >= 2; pass e.g. folds=5")
    if len(genes) < folds:
        raise InputError(
            f"{len(genes)} shared genes cannot be split into {folds} folds: use folds <= "
            f"{len(genes)}"
        )
    shuffled = np.random.default_rng(random_state).permutation(genes)
    return [list(part) for part in np.array_split(shuffled, folds)]


def normalized_truth(X_test: np.ndarray, X_train: Any) -> tuple[np.ndarray, np.ndarray]:
    """``X_test / T`` with ``T`` each spot's total over the training genes (``X_train``'s row
    sums); returns it for the spots with ``T > 0`` and the boolean mask of those spots."""
    totals = _features.row_totals(X_train)
    keep = totals > 0
    return np.asarray(X_test, dtype=np.float64)[keep] / totals[keep, None], keep


def _check_inputs(adata_sc: AnnData, adata_sp: AnnData, schemes: Sequence[str]) -> None:
    for adata, name in ((adata_sc, "adata_sc"), (adata_sp, "adata_sp")):
        validate.check_nonempty(adata, allow_zero_cells=True, name=name)
        validate.check_finite(adata.X, name=f"{name}.X")
    if "normalized" in schemes:
        X = adata_sp.X
        low = X.min() if X.size else 0
        if low < 0:
            raise InputError(
                f"adata_sp.X holds negative values (min {float(low):.3g}); the normalized "
                "scheme divides by spot totals and needs non-negative raw values: pass raw "
                "counts or intensities, or use scheme='raw'"
            )


def _check_prediction(pred: Any, genes: list[str], n_obs: int, name: str) -> np.ndarray:
    if isinstance(pred, pd.DataFrame):
        cols = pd.Index(pred.columns.astype(str))
        if set(genes) <= set(cols):
            pred = pred.loc[:, genes]
        pred = pred.to_numpy()
    elif isinstance(pred, AnnData):
        pred = pred[:, genes].X
    P = to_dense(pred)
    if P.shape != (n_obs, len(genes)) or not np.isfinite(P).all():
        raise RuntimeError(
            f"mapping method {name!r} returned a prediction of shape {P.shape} (expected "
            f"{(n_obs, len(genes))}, finite): a bug in the method or its wrapper"
        )
    return P


def _predictions(
    pred: Any, schemes: Sequence[str], genes: list[str], n_obs: int, name: str
) -> dict[str, np.ndarray]:
    """One checked prediction per scheme (a plain prediction serves every scheme)."""
    if not isinstance(pred, Mapping):
        P = _check_prediction(pred, genes, n_obs, name)
        return dict.fromkeys(schemes, P)
    missing = [s for s in schemes if s not in pred]
    if missing:
        raise RuntimeError(
            f"mapping method {name!r} returned predictions for scheme(s) {sorted(pred)} but "
            f"not {missing}: a bug in the method or its wrapper"
        )
    return {s: _check_prediction(pred[s], genes, n_obs, name) for s in schemes}


def _run(method: MappingMethod, adata_sc, adata_fold, genes, seed) -> tuple[Any, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    pred = method.predict(adata_sc, adata_fold, genes, random_state=seed, **method.params)
    return pred, time.perf_counter() - t0, time.process_time() - c0


def evaluate(
    adata_sc: AnnData,
    adata_sp: AnnData,
    *,
    methods: str | Sequence[str] | Mapping[str, Any] = "all",
    folds: int = 5,
    scheme: Literal["normalized", "raw", "both"] = "both",
    random_state: int = 0,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    as_aggregate: Literal["mean", "median"] = "mean",
) -> MappingEvaluation:
    """Score gene predictors by leave-gene-out cross-validation (see the module docstring).

    Parameters
    ----------
    adata_sc
        scRNA-seq reference, cells x genes (``X``: raw counts or as given).
    adata_sp
        Spatial data, spots x genes (``X``: raw counts or intensities, non-negative for the
        normalized scheme), coordinates in ``obsm`` passed on to the methods.
    methods
        ``"all"`` (cellweave's methods, ``mapping.api.EVALUATED_METHODS``, the
        baselines ``depth``, ``knn``, ``spage`` and any peers added by
        :func:`register_method`), a comma-separated string or list of names, or a dict
        ``{name: predictor or MappingMethod}``. ``depth`` is always included.
    folds
        Number of gene folds ``K`` (5 by default, 10 as in part of the paper).
    scheme
        ``"normalized"``, ``"raw"`` or ``"both"`` (each method runs once per fold either way).
    random_state
        Seed of the gene shuffle (``numpy.random.default_rng(random_state)``), also passed to
        every method.
    method_params
        Extra keyword arguments per method name, e.g. ``{"knn": {"n_neighbors": 30}}``.
    as_aggregate
        Summary over genes before ranking in the accuracy score (``"mean"``, the reference).

    Returns
    -------
    :class:`MappingEvaluation` (``table``, ``tables``, ``per_gene``, ``folds``, ``protocol``).
    """
    if scheme not in ("normalized", "raw", "both"):
        raise InputError(f"scheme={scheme!r} must be 'normalized', 'raw' or 'both'")
    schemes: tuple[Scheme, ...] = SCHEMES if scheme == "both" else (scheme,)
    _check_inputs(adata_sc, adata_sp, schemes)
    genes = shared_genes(adata_sc, adata_sp)
    split = fold_split(genes, folds, random_state=random_state)
    chosen = _resolve_methods(methods, method_params)

    X_sp = adata_sp.X
    col = {g: i for i, g in enumerate(adata_sp.var_names)}
    rows: list[pd.DataFrame] = []
    timing = {m.name: [0.0, 0.0] for m in chosen}
    excluded: list[int] = []
    jobs = [(k, m) for k in range(len(split)) for m in chosen]
    fold_data: dict[int, tuple] = {}
    for k, method in track(jobs, description="leave-gene-out evaluation"):
        if k not in fold_data:
            fold_data.clear()
            test = split[k]
            held_out = set(test)
            train = [g for g in genes if g not in held_out]
            X_test = to_dense(X_sp[:, [col[g] for g in test]])
            X_train = X_sp[:, [col[g] for g in train]]
            truth = {"raw": (X_test, np.ones(adata_sp.n_obs, dtype=bool))}
            if "normalized" in schemes:
                truth["normalized"] = normalized_truth(X_test, X_train)
                excluded.append(int((~truth["normalized"][1]).sum()))
            fold_data[k] = (test, adata_sp[:, train], truth)
        test, view, truth = fold_data[k]
        # a fresh copy per method: a method that edits its input cannot leak into the next
        pred, wall, cpu = _run(method, adata_sc, view.copy(), list(test), random_state)
        P = _predictions(pred, schemes, list(test), adata_sp.n_obs, method.name)
        timing[method.name][0] += wall
        timing[method.name][1] += cpu
        for s in schemes:
            T, keep = truth[s]
            scores = gene_scores(T, P[s][keep], genes=list(test)).reset_index()
            scores.insert(0, "fold", k)
            scores.insert(0, "method", method.name)
            scores.insert(0, "scheme", s)
            rows.append(scores)

    per_gene = pd.concat(rows, ignore_index=True)
    kinds = {m.name: m.kind for m in chosen}
    tables = {s: _summary(per_gene, s, kinds, timing, as_aggregate) for s in schemes}
    protocol = {
        "name": "leave-gene-out cross-validation (SpatialBenchmarking, Li et al. 2022)",
        "split": f"sorted shared genes shuffled with numpy.random.default_rng({random_state}), "
        f"numpy.array_split into {len(split)} folds",
        "scores": "per held-out gene: PCC, SSIM (max-scaled, k1=0.01, k2=0.03, L=1), RMSE of "
        "z-scores, JS of sum-normalised vectors; AS from the per-metric "
        f"{as_aggregate} over genes",
        "normalized": "truth = value / spot total over the fold's training genes (spots with "
        "total 0 left out); predictions scored as returned",
        "schemes": list(schemes),
        "n_cells": int(adata_sc.n_obs),
        "n_spots": int(adata_sp.n_obs),
        "n_genes": len(genes),
        "folds": len(split),
        "random_state": int(random_state),
        "as_aggregate": as_aggregate,
        "spots_left_out_per_fold": excluded if "normalized" in schemes else None,
        "method_params": {m.name: dict(m.params) for m in chosen if m.params},
    }
    return MappingEvaluation(
        tables=tables,
        per_gene=per_gene,
        folds=split,
        protocol=protocol,
        default=api.DEFAULT_METHOD,
    )


def _summary(
    per_gene: pd.DataFrame,
    scheme: str,
    kinds: Mapping[str, str],
    timing: Mapping[str, Sequence[float]],
    as_aggregate: str,
) -> pd.DataFrame:
    """Medians per method (NaN-aware), AS, timing; sorted by AS (best first), ties by PCC."""
    part = per_gene[per_gene["scheme"] == scheme]
    by_method = {name: g.set_index("gene")[list(METRICS)] for name, g in part.groupby("method")}
    AS = accuracy_score(by_method, aggregate=as_aggregate)
    table = pd.DataFrame(index=pd.Index(list(AS.index), name="method"))
    table["kind"] = [kinds[m] for m in table.index]
    for column, metric in SCORE_COLUMNS.items():
        table[column] = [by_method[m][metric].median(skipna=True) for m in table.index]
    table["AS"] = AS.round(12)  # sums of rank fractions: equal AS must tie exactly
    table["seconds"] = [timing[m][0] for m in table.index]
    table["cpu_seconds"] = [timing[m][1] for m in table.index]
    return table.sort_values(["AS", "pcc"], ascending=False, kind="stable")


@dataclass
class MappingEvaluation:
    """Result of :func:`evaluate`.

    Attributes
    ----------
    tables
        ``{scheme: table}``; each table has one row per method (sorted by AS, best first) with
        ``kind``, the per-gene medians ``pcc``, ``ssim``, ``rmse``, ``js``, the accuracy score
        ``AS`` and the whole cross-validation's ``seconds`` and ``cpu_seconds``.
    per_gene
        Long table: ``scheme``, ``method``, ``fold``, ``gene``, ``PCC``, ``SSIM``, ``RMSE``,
        ``JS``.
    folds
        The held-out genes of each fold.
    protocol
        What was done (split, schemes, sizes, parameters).
    default
        The method ``map_cells`` uses when none is given.
    """

    tables: dict[str, pd.DataFrame]
    per_gene: pd.DataFrame
    folds: list[list[str]]
    protocol: dict[str, Any] = field(default_factory=dict)
    default: str = "auto"

    @property
    def schemes(self) -> list[str]:
        return list(self.tables)

    @property
    def table(self) -> pd.DataFrame:
        """The primary scheme's table (normalized when evaluated, else raw)."""
        return self.tables[self._scheme(None)]

    def _scheme(self, scheme: str | None) -> str:
        if scheme is None:
            return "normalized" if "normalized" in self.tables else self.schemes[0]
        if scheme not in self.tables:
            raise InputError(
                f"scheme {scheme!r} was not evaluated; choose among {', '.join(self.tables)}"
            )
        return scheme

    def combine(self, other: MappingEvaluation) -> MappingEvaluation:
        """This evaluation plus ``other``'s methods (``other`` wins on shared names), with AS
        recomputed over all of them; both must have the same folds and schemes (e.g. a
        re-run of some methods beside cached peers)."""
        if self.folds != other.folds or set(self.tables) != set(other.tables):
            raise InputError(
                "the two evaluations differ in folds or schemes: evaluate with the same data, "
                "folds, random_state and scheme"
            )
        new = set(other.per_gene["method"])
        per_gene = pd.concat(
            [self.per_gene[~self.per_gene["method"].isin(new)], other.per_gene],
            ignore_index=True,
        )
        first = next(iter(self.tables))
        rows = pd.concat(
            [self.tables[first].drop(index=list(new), errors="ignore"), other.tables[first]]
        )
        kinds = rows["kind"].to_dict()
        timing = {m: (r["seconds"], r["cpu_seconds"]) for m, r in rows.iterrows()}
        aggregate = self.protocol.get("as_aggregate", "mean")
        tables = {s: _summary(per_gene, s, kinds, timing, aggregate) for s in self.tables}
        return MappingEvaluation(
            tables=tables,
            per_gene=per_gene,
            folds=self.folds,
            protocol={**self.protocol, "combined_with": other.protocol},
            default=other.default,
        )

    def ranking(
        self, scheme: str | None = None, *, among: Sequence[str] | None = None
    ) -> pd.Series:
        """AS rank per method (1 = best) under ``scheme``.

        ``among``: rank only these methods, the accuracy score recomputed from their per-gene
        scores (AS depends on the set of methods compared), e.g. one method against the
        peers and baselines.
        """
        s = self._scheme(scheme)
        if among is None:
            AS = self.tables[s]["AS"]
        else:
            unknown = sorted(set(among) - set(self.tables[s].index))
            if unknown:
                raise InputError(
                    f"method(s) {', '.join(unknown)} were not evaluated; choose among "
                    f"{', '.join(self.tables[s].index)}"
                )
            part = self.per_gene[
                (self.per_gene["scheme"] == s) & self.per_gene["method"].isin(list(among))
            ]
            by_method = {m: g.set_index("gene")[list(METRICS)] for m, g in part.groupby("method")}
            AS = accuracy_score(by_method, aggregate=self.protocol.get("as_aggregate", "mean"))
        return AS.round(12).rank(ascending=False, method="min").astype(int).rename("rank")

    def to_json_dict(
        self, scheme: str | None = None, *, default_name: str | None = None
    ) -> dict[str, Any]:
        """``{"folds", "genes", "scheme", "default", "methods": {NAME: {"kind", "pcc",
        "ssim", "rmse", "js", "seconds", "cpu_seconds"}}}`` (the CLI's ``--metrics-json``);
        NaN becomes ``None``. ``scheme`` defaults to the primary one."""
        s = self._scheme(scheme)
        methods = {}
        for name, row in self.tables[s].iterrows():
            entry: dict[str, Any] = {"kind": str(row["kind"])}
            for key in (*SCORE_COLUMNS, "seconds", "cpu_seconds"):
                entry[key] = jsonable(row[key])
            methods[str(name)] = entry
        return {
            "folds": len(self.folds),
            "genes": int(sum(len(f) for f in self.folds)),
            "scheme": s,
            "default": str(default_name or self.default),
            "methods": methods,
        }

    def write_json(
        self, path, scheme: str | None = None, *, default_name: str | None = None
    ) -> Path:
        """Write :meth:`to_json_dict` to ``path`` atomically (replacing it); returns it."""
        path = Path(path)
        data = self.to_json_dict(scheme, default_name=default_name)
        text = json.dumps(data, indent=2, allow_nan=False)
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(text + "\n")
        return path

    def format(self, scheme: str | None = None, *, digits: int = 3) -> str:
        """The scheme's table as aligned text (for the CLI)."""
        return self.tables[self._scheme(scheme)].to_string(float_format=lambda v: f"{v:.{digits}f}")

    def __str__(self) -> str:
        return "\n\n".join(f"[{s}]\n{self.format(s)}" for s in self.tables)
