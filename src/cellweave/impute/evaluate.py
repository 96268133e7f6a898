"""The imputation yardstick: molecular cross-validation (Batson, Royer & Webber 2019).

Masking only non-zero entries is a trap (a "mean of the non-zeros" predictor wins by knowing
that every held-out entry is non-zero), so methods are scored on independent halves of the
molecules instead:

1. keep genes with a non-zero count in at least ``min_spot_fraction`` of the spots;
2. per seed, ``X1 = numpy.random.default_rng(seed).binomial(X, 0.5)`` and ``X2 = X - X1``;
3. every method sees only ``X1`` (and the coordinates) and returns proportions ``P``;
4. ``P`` is scored on all entries of ``X2``, zeros included
   (:func:`cellweave.metrics.denoising.score_proportions`): Poisson deviance per entry with
   ``mu = s2 * P`` (primary), MSE of ``log1p(1e4 P)`` vs ``log1p(1e4 X2 / s2)``, median gene
   Pearson r; mean over seeds, with wall-clock and CPU seconds.

With a ``truth_layer`` (simulated data), ``P`` is also compared with the true proportions,
and the *secondary* masked-non-zero RMSE is reported (see :func:`evaluate`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .. import validate
from .._params import jsonable
from .._progress import track
from ..device import check_device
from ..errors import EmptyDataError, InputError, MissingKeyError
from ..io import atomic_path
from ..metrics.denoising import molecular_split, score_proportions
from .registry import METHODS, ImputeMethod, get_method

__all__ = [
    "ImputeEvaluation",
    "evaluate",
    "gene_filter",
    "masked_nonzero_split",
    "truth_scores",
]

REFERENCES = ("raw", "gene_mean")
PRIMARY = ("deviance", "log_mse", "gene_pearson_median")
_SCALE = 1e4


@dataclass
class ImputeEvaluation:
    """Result of :func:`evaluate`.

    Attributes
    ----------
    table
        One row per method (index ``method``), sorted by mean deviance: ``kind``,
        ``deviance``, ``deviance_sd`` (over seeds), ``log_mse``, ``gene_pearson_median``,
        ``seconds`` and ``cpu_seconds`` (means over seeds), and with a truth layer
        ``truth_log_rmse``, ``truth_gene_pearson_median`` and the secondary
        ``masked_nonzero_rmse``.
    per_seed
        Long table, one row per (seed, method), same score columns.
    protocol
        What was done: data shape, genes kept, seeds, parameters.
    """

    table: pd.DataFrame
    per_seed: pd.DataFrame
    protocol: dict[str, Any] = field(default_factory=dict)

    def best(self) -> str:
        """Name of the method with the lowest mean deviance."""
        return str(self.table.index[0])

    def to_json_dict(self, default_name: str | None = None) -> dict[str, Any]:
        """``{"protocol": {...}, "default": NAME, "methods": {NAME: {"kind", "deviance",
        "log_mse", "gene_pearson_median", "seconds", ...}}}`` with plain Python values.

        ``default_name`` is what ``method="auto"`` picks; ``None`` names :meth:`best`.
        """
        methods = {}
        for name, row in self.table.iterrows():
            entry = {"kind": str(row["kind"])}
            for key, value in row.items():
                if key != "kind":
                    entry[str(key)] = jsonable(value)
            methods[str(name)] = entry
        return {
            "protocol": jsonable(self.protocol),
            "default": self.best() if default_name is None else str(default_name),
            "methods": methods,
        }

    def write_json(self, path, *, default_name: str | None = None) -> Path:
        """Write :meth:`to_json_dict` to ``path`` atomically (replacing it); returns it."""
        path = Path(path)
        text = json.dumps(self.to_json_dict(default_name), indent=2, allow_nan=False)
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(text + "\n")
        return path

    def format(self, *, digits: int = 4) -> str:
        """The table as aligned text (for the CLI)."""
        return self.table.to_string(float_format=lambda v: f"{v:.{digits}f}")

    def __str__(self) -> str:
        return self.format()


# ----------------------------------------------------------------------------- inputs


def _counts_matrix(adata: AnnData, layer: str | None) -> sparse.csr_matrix:
    X = validate.get_matrix(adata, layer=layer)
    name = validate.matrix_label("adata", layer)
    validate.check_finite(X, name=name)
    validate.check_counts(X, name=name)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise EmptyDataError(
            f"adata has {adata.n_obs} spots and {adata.n_vars} genes: at least one of each is "
            "required; check that the file and any subsetting kept some data"
        )
    return sparse.csr_matrix(X, dtype=np.float64)


def gene_filter(X: sparse.csr_matrix, min_spot_fraction: float) -> np.ndarray:
    """Boolean mask of genes with a non-zero count in at least ``min_spot_fraction`` of
    the spots."""
    if not 0 <= min_spot_fraction <= 1:
        raise InputError(
            f"min_spot_fraction={min_spot_fraction!r} must be in [0, 1]; pass e.g. 0.1"
        )
    X = sparse.csr_matrix(X, copy=True)
    X.eliminate_zeros()
    frac = np.bincount(X.indices, minlength=X.shape[1]) / X.shape[0]
    keep = frac >= min_spot_fraction
    if not keep.any():
        raise EmptyDataError(
            f"no gene is non-zero in at least {min_spot_fraction:.0%} of the {X.shape[0]} "
            "spots; lower min_spot_fraction or pass more spots"
        )
    return keep


def _coordinates(adata: AnnData, spatial_key: str) -> np.ndarray | None:
    if spatial_key not in adata.obsm:
        return None
    return np.asarray(validate.check_spatial(adata, spatial_key=spatial_key), dtype=np.float64)


def _resolve_methods(
    methods: str | Sequence[str], *, has_coords: bool, spatial_key: str
) -> list[ImputeMethod]:
    """Registered methods to run: references first, then the others in the given order."""
    if isinstance(methods, str):
        names = (
            [n for n in METHODS if has_coords or not METHODS[n].spatial]
            if methods == "all"
            else [n.strip() for n in methods.split(",") if n.strip()]
        )
    else:
        names = list(methods)
    chosen = [get_method(n) for n in dict.fromkeys([*REFERENCES, *names])]
    missing = [m.name for m in chosen if m.spatial and not has_coords]
    if missing:
        raise MissingKeyError(
            f"method(s) {', '.join(missing)} need spot coordinates in obsm[{spatial_key!r}], "
            "which is absent; store them there or use non-spatial methods such as knn, "
            "diffusion, nmf"
        )
    return chosen


def _check_params(
    method_params: Mapping[str, Mapping] | None, chosen: list[ImputeMethod]
) -> dict[str, dict[str, Any]]:
    """Options per evaluated method, each checked against its declaration (before any work)."""
    method_params = dict(method_params or {})
    unknown = sorted(set(method_params) - {m.name for m in chosen})
    if unknown:
        raise InputError(
            f"method_params names method(s) {', '.join(unknown)} that are not evaluated; "
            f"use names among {', '.join(m.name for m in chosen)}"
        )
    by_name = {m.name: m for m in chosen}
    return {name: by_name[name].check_options(opts) for name, opts in method_params.items()}


def _truth_proportions(adata: AnnData, truth_layer: str, keep: np.ndarray) -> np.ndarray:
    T = validate.check_layer(adata, truth_layer)
    T = np.asarray(T.toarray() if sparse.issparse(T) else T, dtype=np.float64)[:, keep]
    if not np.isfinite(T).all() or (T < 0).any():
        raise InputError(
            f"adata.layers[{truth_layer!r}] must hold finite non-negative expected expression; "
            "pass the simulator's 'true_expression' layer"
        )
    totals = T.sum(axis=1, keepdims=True)
    return np.divide(T, totals, out=np.full_like(T, 1.0 / T.shape[1]), where=totals > 0)


# ----------------------------------------------------------------------------- scores


def truth_scores(P: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Error of proportions ``P`` against true proportions ``truth`` (rows sum to 1).

    ``truth_log_rmse``: RMSE of ``log1p(1e4 P)`` vs ``log1p(1e4 truth)`` over all entries
    (the scale of ``adata.layers["imputed"]``); ``truth_gene_pearson_median``: median over
    genes of the Pearson r of ``P[:, j]`` and ``truth[:, j]`` (genes constant in either are
    left out).
    """
    diff = np.log1p(_SCALE * P) - np.log1p(_SCALE * truth)
    a = P - P.mean(axis=0)
    b = truth - truth.mean(axis=0)
    denom = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    tol = 1e-12 * np.sqrt((P**2).sum(axis=0) * (truth**2).sum(axis=0))
    ok = denom > np.maximum(tol, 0)
    r = (a[:, ok] * b[:, ok]).sum(axis=0) / denom[ok]
    return {
        "truth_log_rmse": float(np.sqrt(np.mean(diff**2))),
        "truth_gene_pearson_median": float(np.median(r)) if r.size else float("nan"),
    }


def masked_nonzero_split(
    X: sparse.csr_matrix, *, fraction: float, random_state: int
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Zero a random ``fraction`` of the non-zero entries of ``X``: the masked counts and the
    boolean mask of the held-out entries (over ``X.data``, in CSR order)."""
    if not 0 < fraction < 1:
        raise InputError(f"masked_fraction={fraction!r} must be in (0, 1); pass e.g. 0.1")
    X = sparse.csr_matrix(X, dtype=np.float64, copy=True)
    X.eliminate_zeros()
    rng = np.random.default_rng(random_state)
    held = rng.random(X.nnz) < fraction
    masked = X.copy()
    masked.data[held] = 0.0
    masked.eliminate_zeros()
    return masked, held


def _masked_nonzero_rmse(
    method: ImputeMethod, X: sparse.csr_matrix, coords, seed: int, params: dict, fraction: float
) -> float:
    """Secondary score (the "seed-001 style" masked-non-zero RMSE): fit on ``X`` with a
    fraction of its non-zero entries zeroed, RMSE of ``log1p(1e4 P)`` vs
    ``log1p(1e4 X / s)`` over the held-out entries (``s``: the spot's full library).
    Biased towards predicting non-zero values; never use it to rank methods."""
    Xc = sparse.csr_matrix(X, copy=True)
    Xc.eliminate_zeros()
    masked, held = masked_nonzero_split(Xc, fraction=fraction, random_state=seed)
    if not held.any():
        return float("nan")
    P = method.fn(masked, coords=coords, random_state=seed, **params)
    rows = np.repeat(np.arange(Xc.shape[0]), np.diff(Xc.indptr))[held]
    cols = Xc.indices[held]
    s = np.asarray(Xc.sum(axis=1)).ravel()
    target = np.log1p(_SCALE * Xc.data[held] / s[rows])
    return float(np.sqrt(np.mean((np.log1p(_SCALE * P[rows, cols]) - target) ** 2)))


def _check_prediction(P, shape: tuple[int, int], name: str) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    ok = (
        P.shape == shape
        and np.isfinite(P).all()
        and (P > 0).all()
        and np.allclose(P.sum(axis=1), 1.0, atol=1e-6)
    )
    if not ok:
        raise RuntimeError(
            f"imputation method {name!r} returned invalid proportions (shape {P.shape}, "
            "expected finite, strictly positive rows summing to 1): this is a bug in the method"
        )
    return P


def _run(method: ImputeMethod, X1, coords, seed: int, params: dict):
    t0, c0 = time.perf_counter(), time.process_time()
    P = method.fn(X1, coords=coords, random_state=seed, **params)
    return P, time.perf_counter() - t0, time.process_time() - c0


# ----------------------------------------------------------------------------- protocol


def evaluate(
    adata: AnnData,
    *,
    methods: str | Sequence[str] = "all",
    seeds: Sequence[int] = (0, 1, 2),
    layer: str | None = None,
    spatial_key: str = "spatial",
    min_spot_fraction: float = 0.1,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    truth_layer: str | None = None,
    masked_fraction: float | str | None = "auto",
    device: str = "auto",
) -> ImputeEvaluation:
    """Score imputation methods by molecular cross-validation (see the module docstring).

    Parameters
    ----------
    adata
        Spots x genes raw counts (in ``X`` or ``layers[layer]``), coordinates in
        ``obsm[spatial_key]`` (optional: without them only non-spatial methods run).
    methods
        ``"all"`` (every registered method whose coordinate requirement is met), a
        comma-separated string or a list of names. The references ``raw`` and ``gene_mean``
        are always included.
    seeds
        Seeds of the molecular splits; scores are averaged over them.
    layer
        Layer holding the counts (default ``adata.X``).
    spatial_key
        Key of the coordinates in ``adata.obsm``.
    min_spot_fraction
        Genes must be non-zero in at least this fraction of the spots.
    method_params
        Extra keyword arguments per method name, e.g. ``{"knn": {"n_neighbors": 30}}``.
    truth_layer
        Layer with the true expected expression (the simulator's ``"true_expression"``):
        adds ``truth_log_rmse`` and ``truth_gene_pearson_median`` (:func:`truth_scores`,
        truth renormalized over the kept genes).
    masked_fraction
        Fraction of the non-zero entries held out for the *secondary* masked-non-zero RMSE
        (``masked_nonzero_rmse``; each method is fitted once more per seed; biased towards
        non-zero predictors, reported only for comparison with older benchmarks).
        ``"auto"``: 0.1 when ``truth_layer`` is given, else skipped; ``None``: skipped.
    device
        Device of the methods that take one (``mf``, ``ae``, ``auto``) unless
        ``method_params`` names one; the others run on the CPU. Checked before any work
        (:func:`cellweave.device.parse_device`).

    Returns
    -------
    :class:`ImputeEvaluation` with ``table``, ``per_seed`` and ``protocol``.
    """
    has_coords = isinstance(adata, AnnData) and spatial_key in adata.obsm
    chosen = _resolve_methods(methods, has_coords=has_coords, spatial_key=spatial_key)
    params = _check_params(method_params, chosen)  # methods and options first, then the data
    check_device(device)
    if device != "auto":
        for method in chosen:
            if "device" in method.options:
                params.setdefault(method.name, {}).setdefault("device", device)
    X_all = _counts_matrix(adata, layer)
    keep = gene_filter(X_all, min_spot_fraction)
    X = X_all[:, keep]
    coords = _coordinates(adata, spatial_key)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InputError("seeds is empty; pass at least one seed, e.g. seeds=(0, 1, 2)")
    if masked_fraction == "auto":
        masked_fraction = 0.1 if truth_layer is not None else None
    truth = _truth_proportions(adata, truth_layer, keep) if truth_layer is not None else None

    rows = []
    splits: dict[int, tuple] = {}
    jobs = [(seed, m) for seed in seeds for m in chosen]
    named = {"description": "evaluating", "label": lambda job: f"{job[1].name} seed {job[0]}"}
    for seed, method in track(jobs, **named):  # "evaluating mf seed 1 (2/42)"
        if seed not in splits:
            splits.clear()
            splits[seed] = molecular_split(X, random_state=seed)
        X1, X2 = splits[seed]
        kwargs = dict(params.get(method.name, {}))
        P, wall, cpu = _run(method, X1, coords, seed, kwargs)
        P = _check_prediction(P, X.shape, method.name)
        row = {"method": method.name, "kind": method.kind, "seed": seed}
        row.update(score_proportions(P, X2))
        row.update(seconds=wall, cpu_seconds=cpu)
        if truth is not None:
            row.update(truth_scores(P, truth))
        if masked_fraction is not None:
            row["masked_nonzero_rmse"] = _masked_nonzero_rmse(
                method, X, coords, seed, kwargs, masked_fraction
            )
        rows.append(row)

    per_seed = pd.DataFrame(rows)
    protocol = {
        "name": "molecular cross-validation (Batson, Royer & Webber 2019)",
        "split": "X1 = numpy.random.default_rng(seed).binomial(X, 0.5); X2 = X - X1",
        "scores": "on all entries of X2; deviance: mean Poisson deviance per entry with "
        "mu = s2 * P (primary); log_mse: MSE of log1p(1e4 P) vs log1p(1e4 X2 / s2); "
        "gene_pearson_median: median over genes of Pearson r of P and X2 / s2",
        "seeds": seeds,
        "min_spot_fraction": float(min_spot_fraction),
        "layer": layer,
        "spatial_key": spatial_key if coords is not None else None,
        "n_spots": int(X.shape[0]),
        "n_genes": int(adata.n_vars),
        "n_genes_kept": int(keep.sum()),
        "method_params": {k: dict(v) for k, v in params.items()},
        "truth_layer": truth_layer,
        "masked_fraction": masked_fraction,
    }
    if masked_fraction is not None:
        protocol["masked_nonzero_rmse"] = (
            "SECONDARY: RMSE of log1p(1e4 P) vs log1p(1e4 X / s) on a held-out fraction of the "
            "non-zero entries; biased towards non-zero predictors, not for ranking"
        )
    return ImputeEvaluation(_summary(per_seed), per_seed, protocol)


def _summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per method (plus the sd of the deviance), sorted by deviance."""
    scores = [c for c in per_seed.columns if c not in ("method", "kind", "seed")]
    grouped = per_seed.groupby("method", sort=False)
    table = grouped[scores].mean()
    table.insert(0, "kind", grouped["kind"].first())
    table.insert(2, "deviance_sd", grouped["deviance"].std(ddof=1).fillna(0.0))
    table = table.sort_values("deviance", kind="stable")
    table.index.name = "method"
    return table
