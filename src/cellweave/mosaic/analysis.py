"""Generation from a trained mosaic model: imputing a modality, differential tests.

:func:`differential` follows scVI's Bayesian test (Lopez et al. 2018; Boyeau et al. 2019):
pairs of cells are drawn from the two groups, a latent ``z`` is sampled from each cell's
posterior and decoded into normalized expression ``rho`` (NB: ``softmax`` proportions;
Bernoulli: open probability) with one batch's decoder parameters, and per feature

* ``mode="change"``: ``p = P(|log2 rho_1 - log2 rho_2| > delta)``,
* ``mode="vanilla"``: ``p = P(rho_1 > rho_2)``,

with the Bayes factor ``log(p / (1 - p))``. ``is_de_fdr`` selects the features with the largest
``p`` while the posterior expected false discovery proportion stays below ``fdr``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from ..errors import EmptyDataError, InputError, MissingKeyError
from .data import MosaicData

__all__ = ["GenerativeModel", "differential", "impute", "require_trained"]

_EPS = 1e-8


class GenerativeModel(Protocol):
    """What :func:`impute` and :func:`differential` use of a trained model: its data and
    three public methods, whose signatures and documentation are those of
    :class:`~cellweave.mosaic.MosaicModel` (:meth:`~cellweave.mosaic.MosaicModel.infer`,
    :meth:`~cellweave.mosaic.MosaicModel.decode`,
    :meth:`~cellweave.mosaic.MosaicModel.predicts_totals`)."""

    data: MosaicData
    mdata: Any
    is_trained: bool
    infer: Callable[..., dict[str, np.ndarray]]
    decode: Callable[..., np.ndarray]
    predicts_totals: Callable[[str], bool]


def require_trained(model: GenerativeModel) -> None:
    """Refuse an untrained model (one line naming the fix)."""
    if not model.is_trained:
        raise InputError("the model is not trained: call model.train() (or load a saved model)")


def _transform_batch(model: GenerativeModel, index: int, batch: str | None) -> int:
    m = model.data.modalities[index]
    names = model.data.batch_names
    if batch is None:
        counts = np.bincount(model.data.batch_codes[m.present], minlength=len(names))
        return int(np.argmax(counts))
    if batch not in names:
        raise MissingKeyError(f"transform_batch {batch!r} is not a batch: use one of {names}")
    return names.index(batch)


def _modality_index(model: GenerativeModel, modality: str) -> int:
    names = model.data.names
    if modality not in names:
        raise MissingKeyError(f"the model has no modality {modality!r}: use one of {names}")
    return names.index(modality)


def _check_modalities(model: GenerativeModel, use: Sequence[str] | None) -> np.ndarray | None:
    if use is None:
        return None
    for name in use:
        _modality_index(model, name)
    return np.asarray([name in use for name in model.data.names])


def impute(
    model: GenerativeModel,
    modality: str,
    *,
    cells: str | np.ndarray = "missing",
    transform_batch: str | None = None,
    library_size: float | None = None,
    use_modalities: Sequence[str] | None = None,
):
    """Expected values of ``modality`` for cells (by default those that lack it).

    Also the method :meth:`cellweave.mosaic.MosaicModel.impute_modality` (``model`` is then
    the model itself).

    Parameters
    ----------
    modality
        Modality to generate.
    cells
        ``"missing"`` (cells without the modality), ``"all"``, or cell indices.
    transform_batch
        Batch whose decoder parameters (scale, bias) are used; default: the batch with
        the most cells measuring the modality.
    library_size
        Library size of the output (NB: counts per cell; default the median library of
        the cells measuring it, except protein, whose decoder predicts each cell's total
        itself); ignored for Bernoulli (open probabilities).
    use_modalities
        Modalities the encoder may use (default: all a cell measured); e.g. leave out the
        modality itself to score held-out imputation.

    Returns
    -------
    AnnData (cells x the modality's model features) with the expected values in ``X``.
    """
    require_trained(model)
    import anndata as ad

    i = _modality_index(model, modality)
    m = model.data.modalities[i]
    if isinstance(cells, str):
        if cells not in ("missing", "all"):
            raise InputError(f"cells={cells!r}: pass 'missing', 'all' or an array of indices")
        idx = np.flatnonzero(~m.present) if cells == "missing" else np.arange(model.data.n_cells)
    else:
        idx = np.asarray(cells, dtype=np.int64)
    mask = _check_modalities(model, use_modalities)
    if mask is not None:
        usable = (model.data.present[idx] & mask).any(1)
        if not usable.all():
            raise EmptyDataError(
                f"{int((~usable).sum())} cell(s) measured none of use_modalities="
                f"{list(use_modalities)}: choose modalities those cells have"
            )
    batch = _transform_batch(model, i, transform_batch)
    # an absolute decoder (protein) predicts each cell's total itself
    absolute = model.predicts_totals(modality)
    if library_size is not None:
        library = float(library_size)
    else:
        library = None if absolute else float(np.median(m.library[m.present]))
    out = np.zeros((idx.size, m.n_features), dtype=np.float32)
    if idx.size:
        z = model.infer(idx, use_modalities=use_modalities)["mean"]
        out[:] = model.decode(modality, z, transform_batch=batch, library_size=library)
    obs = pd.DataFrame(index=model.data.obs_names[idx])
    var = pd.DataFrame(index=pd.Index(m.features))
    adata = ad.AnnData(out, obs=obs, var=var)
    adata.uns["cellweave_impute"] = {
        "modality": modality,
        "transform_batch": model.data.batch_names[batch],
        "library_size": "predicted" if library is None else library,
    }
    return adata


def _group_cells(model: GenerativeModel, groupby, group) -> np.ndarray:
    if isinstance(groupby, str):
        if groupby not in model.mdata.obs.columns:
            raise MissingKeyError(f"mdata.obs has no column {groupby!r}: pass an existing column")
        values = model.mdata.obs[groupby].astype(str).to_numpy()
    else:
        values = np.asarray(groupby).astype(str)
        if values.shape[0] != model.data.n_cells:
            raise InputError(
                f"groupby has {values.shape[0]} values for {model.data.n_cells} cells: give one "
                "per cell"
            )
    wanted = [group] if isinstance(group, str) else list(map(str, group))
    return np.flatnonzero(np.isin(values, wanted))


def differential(
    model: GenerativeModel,
    groupby: str | np.ndarray | pd.Series,
    group1: str | Sequence[str] | None = None,
    group2: str | Sequence[str] | None = None,
    *,
    modality: str | None = None,
    mode: str = "change",
    delta: float = 0.25,
    n_samples: int = 5000,
    fdr: float = 0.05,
    transform_batch: str | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """Bayesian differential test of ``group1`` vs ``group2`` (default: all other cells),
    with Bayes factors (scVI-style; see the module docstring).

    Also the method :meth:`cellweave.mosaic.MosaicModel.differential` (``model`` is then the
    model itself).

    Parameters
    ----------
    groupby
        ``mdata.obs`` column or one value per cell.
    group1, group2
        Group value(s); ``group2=None`` compares with every other cell. ``group1=None``: each
        group of ``groupby`` against all other cells (one-vs-rest, as scvi-tools'
        ``groupby`` without ``group1``; :func:`~cellweave.mosaic.groupwise.one_vs_rest`).
    modality
        Modality tested (default: the first).
    mode
        ``"change"`` or ``"vanilla"`` (see the module docstring).
    delta
        Log2 fold-change threshold of ``mode="change"``.
    n_samples
        Cell pairs drawn (one posterior sample each).
    fdr
        Target posterior false discovery proportion of ``is_de_fdr``.
    transform_batch
        Batch whose decoder parameters are used (default: the largest measuring it).
    random_state
        Seed of the pairs and the posterior samples.

    Returns
    -------
    DataFrame indexed by feature: ``proba_de``, ``bayes_factor``, ``lfc_mean``,
    ``lfc_median``, ``lfc_std``, ``scale1``, ``scale2`` (mean ``rho`` per group),
    ``is_de_fdr``; sorted by ``proba_de`` (descending). With ``group1=None``: one such table
    per group stacked, with ``comparison``, ``group1`` and ``group2`` columns first.
    """
    require_trained(model)
    if group1 is None:
        from .groupwise import one_vs_rest

        options = {"modality": modality, "mode": mode, "delta": delta, "n_samples": n_samples}
        options.update(fdr=fdr, transform_batch=transform_batch, random_state=random_state)
        return one_vs_rest(differential, model, groupby, **options)
    if mode not in ("change", "vanilla"):
        raise InputError(f"mode={mode!r} is unknown: use 'change' or 'vanilla'")
    name = model.data.names[0] if modality is None else modality
    i = _modality_index(model, name)
    cells1 = _group_cells(model, groupby, group1)
    cells2 = (
        np.setdiff1d(np.arange(model.data.n_cells), cells1)
        if group2 is None
        else _group_cells(model, groupby, group2)
    )
    for label, cells in (("group1", cells1), ("group2", cells2)):
        if cells.size == 0:
            raise EmptyDataError(f"{label} has no cells: check groupby and the group values")
    rng = np.random.default_rng(random_state)
    gen = torch.Generator().manual_seed(int(random_state))
    batch = _transform_batch(model, i, transform_batch)
    rhos = []
    for cells in (cells1, cells2):
        pick = rng.choice(cells, int(n_samples), replace=True)
        post = model.infer(pick)
        mean, std = torch.as_tensor(post["mean"]), torch.exp(0.5 * torch.as_tensor(post["log_var"]))
        z = mean + std * torch.randn(mean.shape, generator=gen)
        rho = model.decode(name, z, transform_batch=batch, library_size=1.0, batch_size=2048)
        rhos.append(rho.astype(np.float64))
    r1, r2 = rhos
    lfc = np.log2(r1 + _EPS) - np.log2(r2 + _EPS)
    p = (np.abs(lfc) > delta).mean(0) if mode == "change" else (r1 > r2).mean(0)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    out = pd.DataFrame(
        {
            "proba_de": p,
            "bayes_factor": np.log(p) - np.log1p(-p),
            "lfc_mean": lfc.mean(0),
            "lfc_median": np.median(lfc, 0),
            "lfc_std": lfc.std(0),
            "scale1": r1.mean(0),
            "scale2": r2.mean(0),
        },
        index=pd.Index(model.data.modalities[i].features, name="feature"),
    )
    out = out.sort_values("proba_de", ascending=False)
    expected_fdp = np.cumsum(1 - out["proba_de"].to_numpy()) / np.arange(1, len(out) + 1)
    n_de = int(np.flatnonzero(expected_fdp <= fdr).max() + 1) if (expected_fdp <= fdr).any() else 0
    out["is_de_fdr"] = np.arange(len(out)) < n_de
    return out
