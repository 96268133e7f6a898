"""Peers of the mosaic benchmark: unintegrated PCA/LSI baseline, MultiVI, GLUE, totalVI,
cellweave.

Every function takes a MuData laid out like ``mop_mosaic_rna_atac.h5mu`` (each modality holds
only its measured cells, presence masks in ``mdata.obsm[mod]``) and returns an embedding (or an
imputation) in the order of ``mdata.obs_names`` plus timing information. scvi-tools and
cellweave.mosaic are imported inside the functions, so the baseline runs without them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
from scipy import sparse


@dataclass
class Result:
    """An embedding (or imputation) of a peer with its cost."""

    values: np.ndarray
    seconds: float
    epochs: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / self.epochs if self.epochs else float("nan")


# --------------------------------------------------------------------------------------
# Full-size modality matrices (zeros for unmeasured cells)
# --------------------------------------------------------------------------------------


def present(mdata: md.MuData, mod: str) -> np.ndarray:
    """Boolean mask over ``mdata.obs_names`` of the cells that measured ``mod``."""
    if mod in mdata.obsm:
        return np.asarray(mdata.obsm[mod]).ravel().astype(bool)
    return mdata.obs_names.isin(mdata[mod].obs_names)


def full_matrix(mdata: md.MuData, mod: str) -> sparse.csr_matrix:
    """``(n_obs, n_vars[mod])`` CSR counts with all-zero rows for cells lacking ``mod``."""
    sub = mdata[mod]
    rows = mdata.obs_names.get_indexer(sub.obs_names)
    x = sparse.csr_matrix(sub.X, dtype=np.float32)
    coo = x.tocoo()
    return sparse.csr_matrix(
        (coo.data, (rows[coo.row], coo.col)), shape=(mdata.n_obs, sub.n_vars), dtype=np.float32
    )


# --------------------------------------------------------------------------------------
# Unintegrated baseline
# --------------------------------------------------------------------------------------


def unintegrated(mdata: md.MuData, *, n_comps: int = 30, random_state: int = 0) -> Result:
    """PCA of log-normalised RNA and LSI of ATAC (protein: PCA of CLR), each fitted on the
    cells that measured the modality, scaled to unit total variance, zero-filled for the cells
    that did not, concatenated (:func:`cellweave.mosaic.unintegrated_embedding`)."""
    from cellweave.mosaic.unintegrated import unintegrated_embedding

    t0 = time.perf_counter()
    emb = unintegrated_embedding(mdata, n_comps=n_comps, random_state=random_state)
    return Result(emb, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------
# scvi-tools peers
# --------------------------------------------------------------------------------------


class _EpochClock:
    """Lightning callback collecting the wall time of each training epoch."""

    def __new__(cls):
        from lightning.pytorch.callbacks import Callback

        class Clock(Callback):
            def __init__(self):
                self.times: list[float] = []
                self._t = 0.0

            def on_train_epoch_start(self, trainer, pl_module):
                self._t = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module):
                self.times.append(time.perf_counter() - self._t)
                n, last = len(self.times), self.times[-1]
                print(f"  epoch {n}: {last:.1f} s", file=sys.stderr, flush=True)

        return Clock()


def _full_mudata(mdata: md.MuData, mods: tuple[str, ...], batch_key: str) -> md.MuData:
    """Every modality with every cell (zeros where unmeasured): scvi-tools' mosaic layout."""
    obs = pd.DataFrame({batch_key: mdata.obs[batch_key].astype(str).values}, index=mdata.obs_names)
    out = {}
    for mod in mods:
        x = full_matrix(mdata, mod)
        # scvi-tools' protein checks need a dense array (np.matrix from sparse sums breaks them)
        a = ad.AnnData(x.toarray() if mod == "protein" else x, obs=obs.copy())
        a.var_names = mdata[mod].var_names
        out[mod] = a
    full = md.MuData(out)
    full.obs[batch_key] = obs[batch_key].values
    return full


def multivi(
    mdata: md.MuData,
    *,
    batch_key: str = "batch",
    max_epochs: int = 100,
    seed: int = 0,
) -> Result:
    """MultiVI (scvi-tools 1.4.2, default model and training options except ``max_epochs``) on
    RNA + ATAC; missing modalities are all-zero rows, which MultiVI treats as unmeasured."""
    import scvi

    scvi.settings.seed = seed
    full = _full_mudata(mdata, ("rna", "atac"), batch_key)
    scvi.model.MULTIVI.setup_mudata(
        full, batch_key=batch_key, modalities={"rna_layer": "rna", "atac_layer": "atac"}
    )
    model = scvi.model.MULTIVI(full)
    clock = _EpochClock()
    t0 = time.perf_counter()
    model.train(max_epochs=max_epochs, callbacks=[clock], enable_progress_bar=False)
    seconds = time.perf_counter() - t0
    z = model.get_latent_representation()
    return Result(np.asarray(z), seconds, len(clock.times), {"epoch_seconds": clock.times})


def totalvi_impute(
    mdata: md.MuData,
    hidden: np.ndarray,
    *,
    batch_key: str = "batch",
    max_epochs: int | None = None,
    seed: int = 0,
) -> Result:
    """totalVI (scvi-tools 1.4.2 defaults) with the protein of the ``hidden`` cells set to zero
    (a batch whose proteins are all zero is treated as unmeasured); returns the denoised protein
    of every cell, decoded in a batch that measured protein (the totalVI imputation recipe).

    ``mdata`` must hold RNA and protein for every cell (the truth); only the ``hidden`` rows
    of protein are removed before training.
    """
    import scvi

    scvi.settings.seed = seed
    full = _full_mudata(mdata, ("rna", "protein"), batch_key)
    full["protein"].X[np.flatnonzero(hidden)] = 0
    scvi.model.TOTALVI.setup_mudata(
        full, batch_key=batch_key, modalities={"rna_layer": "rna", "protein_layer": "protein"}
    )
    model = scvi.model.TOTALVI(full)
    clock = _EpochClock()
    t0 = time.perf_counter()
    kwargs = {} if max_epochs is None else {"max_epochs": max_epochs}
    model.train(callbacks=[clock], enable_progress_bar=False, **kwargs)
    seconds = time.perf_counter() - t0
    observed = sorted(set(full.obs[batch_key][~hidden]))
    _, protein = model.get_normalized_expression(
        n_samples=25,
        transform_batch=observed,
        include_protein_background=True,
        sample_protein_mixing=False,
        return_mean=True,
    )
    return Result(np.asarray(protein), seconds, len(clock.times), {"epoch_seconds": clock.times})


def _glue_graph(mdata: md.MuData, key: str = "gene_peak"):
    """GLUE guidance graph from ``mdata.varp[key]``: one edge each way per nonzero link
    (weight = |value|, sign = its sign) plus a self-loop on every feature, as
    ``scglue.genomics.rna_anchored_guidance_graph`` lays it out."""
    import networkx as nx

    links = sparse.coo_matrix(mdata.varp[key])
    names = np.asarray(mdata.var_names)
    graph = nx.MultiDiGraph()
    graph.add_nodes_from(names)
    for i, j, v in zip(links.row, links.col, links.data, strict=True):
        if i != j and v != 0:
            graph.add_edge(names[i], names[j], weight=float(abs(v)), sign=int(np.sign(v)))
    for name in names:
        graph.add_edge(name, name, weight=1.0, sign=1)
    return graph


def _glue_inputs(mdata: md.MuData, n_comps: int, random_state: int) -> dict:
    """Per-modality AnnData of the cells that measured it, configured as the GLUE tutorial:
    RNA counts (NB) encoded from the PCA of the scaled log-normalised data, ATAC counts (NB)
    from LSI; every feature with a count used (the MOp file: 1,677 genes, 25,734 peaks)."""
    import scanpy as sc
    import scglue

    out = {}
    for mod in ("rna", "atac"):
        sub = mdata[mod]
        sub = sub[:, np.asarray(sub.X.sum(axis=0)).ravel() > 0]  # LSI's idf needs counts
        a = ad.AnnData(
            sparse.csr_matrix(sub.X, dtype=np.float32), obs=pd.DataFrame(index=sub.obs_names)
        )
        a.var_names = sub.var_names
        a.var["highly_variable"] = True
        a.layers["counts"] = a.X.copy()
        if mod == "rna":
            sc.pp.normalize_total(a)
            sc.pp.log1p(a)
            sc.pp.scale(a, max_value=10)
            sc.tl.pca(a, n_comps=n_comps, svd_solver="auto", random_state=random_state)
            a.X = a.layers["counts"].copy()
            scglue.models.configure_dataset(
                a, "NB", use_highly_variable=True, use_layer="counts", use_rep="X_pca"
            )
        else:
            scglue.data.lsi(a, n_components=n_comps, n_iter=15, random_state=random_state)
            scglue.models.configure_dataset(a, "NB", use_highly_variable=True, use_rep="X_lsi")
        out[mod] = a
    return out


def glue(
    mdata: md.MuData,
    *,
    n_comps: int = 100,
    max_epochs: int | None = None,
    seed: int = 0,
    skip_balance: bool = False,
) -> Result:
    """GLUE (scglue 0.4.1, ``fit_SCGLUE`` with its defaults: pretraining, balancing weights,
    fine-tuning, each with scglue's automatic epoch count and early stopping) on RNA + ATAC
    of a mosaic, guided by ``mdata.varp["gene_peak"]``. GLUE embeds each modality's cells
    with that modality's encoder; a cell that measured both gets the mean of its two
    encodings, the others their one encoding. ``max_epochs`` caps each of the two fits;
    ``skip_balance`` skips the balancing weights (for tiny smoke tests, where they are NaN)."""
    import tempfile

    import scglue
    import torch

    scglue.config.CPU_ONLY = not torch.cuda.is_available()
    adatas = _glue_inputs(mdata, n_comps, seed)
    graph = _glue_graph(mdata)
    fit_kws: dict = {}
    if max_epochs is not None:
        fit_kws["max_epochs"] = max_epochs
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fit_kws["directory"] = tmp
        model = scglue.models.fit_SCGLUE(
            adatas,
            graph,
            init_kws={"random_seed": seed},
            fit_kws=fit_kws,
            skip_balance=skip_balance,
        )
    seconds = time.perf_counter() - t0
    z, counts = None, np.zeros(mdata.n_obs)
    for mod, a in adatas.items():
        emb = model.encode_data(mod, a)
        z = np.zeros((mdata.n_obs, emb.shape[1])) if z is None else z
        rows = mdata.obs_names.get_indexer(a.obs_names)
        z[rows] += emb
        counts[rows] += 1
    return Result(z / np.maximum(counts, 1)[:, None], seconds, None, {"n_comps": n_comps})


# --------------------------------------------------------------------------------------
# cellweave
# --------------------------------------------------------------------------------------


def cellweave_available() -> str | None:
    """None when ``cellweave.mosaic`` can be imported, else the reason."""
    try:
        from cellweave.mosaic import MosaicModel, integrate  # noqa: F401
    except ImportError as err:
        return f"cellweave.mosaic is not available ({err})"
    return None


def cellweave_integrate(
    mdata: md.MuData,
    *,
    batch_key: str = "batch",
    label_key: str | None = None,
    max_epochs: int | None = None,
    seed: int = 0,
    params: dict | None = None,
) -> Result:
    """``cellweave.mosaic.integrate`` on a copy of ``mdata`` (``params``: further
    ``MosaicModel`` options); returns ``obsm["X_cellweave"]`` and, with ``label_key``, the
    model's predicted labels in ``extra["predicted"]``."""
    from cellweave.mosaic import integrate

    kwargs: dict = {"batch_key": batch_key, "label_key": label_key, "random_state": seed}
    kwargs.update(params or {})
    if max_epochs is not None:
        kwargs["max_epochs"] = max_epochs
    data = mdata.copy()
    t0 = time.perf_counter()
    integrate(data, **kwargs)
    seconds = time.perf_counter() - t0
    info = dict(data.uns.get("cellweave", {}))
    extra = {"fit_seconds": info.get("seconds")}
    if label_key is not None and "cellweave_label" in data.obs:
        extra["predicted"] = data.obs["cellweave_label"].astype(str).to_numpy()
    epochs = info.get("epochs") or None
    return Result(np.asarray(data.obsm["X_cellweave"]), seconds, epochs, extra)


def cellweave_transport(
    mdata: md.MuData, base: Result, *, batch_key: str = "batch", reference: str = "rna"
) -> Result:
    """``base`` (a cellweave embedding of ``mdata``) with the batches that measured no
    ``reference`` modality moved onto the others by ``cellweave.tl.transport_batches``."""
    import anndata as ad

    from cellweave.tl import transport_batches

    batches = mdata.obs[batch_key].astype(str).to_numpy()
    measured = present(mdata, reference)
    source = sorted(b for b in set(batches) if not measured[batches == b].any())
    if not source:
        raise ValueError(f"every batch measured {reference!r}: nothing to move")
    adata = ad.AnnData(obs=mdata.obs[[batch_key]].copy())
    adata.obsm["X_cellweave"] = base.values
    t0 = time.perf_counter()
    transport_batches(adata, source, batch_key=batch_key)
    seconds = time.perf_counter() - t0
    note = (
        f"the cellweave row's embedding with batch(es) {', '.join(source)} (no {reference}) "
        f"moved onto the others by cellweave.tl.transport_batches ({seconds:.1f} s)"
    )
    extra = {**base.extra, "transport_seconds": seconds, "note": note}
    return Result(
        np.asarray(adata.obsm["X_cellweave_ot"]), base.seconds + seconds, base.epochs, extra
    )


def cellweave_impute(
    mdata: md.MuData,
    modality: str,
    *,
    batch_key: str = "batch",
    max_epochs: int | None = None,
    seed: int = 0,
    params: dict | None = None,
) -> Result:
    """Train :class:`cellweave.mosaic.MosaicModel` (``params``: further options) on the
    mosaic ``mdata`` and generate ``modality`` for the cells that lack it (rows in the order
    of those cells in ``mdata.obs_names``)."""
    from cellweave.mosaic import MosaicModel

    model = MosaicModel(mdata, batch_key=batch_key, random_state=seed, **(params or {}))
    kwargs = {} if max_epochs is None else {"max_epochs": max_epochs}
    t0 = time.perf_counter()
    fit = model.train(random_state=seed, **kwargs)
    seconds = time.perf_counter() - t0
    imputed = model.impute_modality(modality, cells="missing")
    missing = mdata.obs_names[~present(mdata, modality)]
    values = np.asarray(imputed[missing].X)
    epochs = getattr(fit, "epochs", None)
    epochs = len(epochs) if isinstance(epochs, list) else model.train_params.get("epochs")
    return Result(values, seconds, epochs)


# --------------------------------------------------------------------------------------
# Imputation baseline and the scib-metrics reference scorer
# --------------------------------------------------------------------------------------


def knn_impute(
    mdata: md.MuData, modality: str, *, source: str = "rna", k: int = 15, n_comps: int = 30
) -> Result:
    """Mean log1p ``modality`` of the ``k`` nearest cells that measured it, in the PCA of the
    log-normalised ``source`` (a non-model baseline); counts scale, rows = cells lacking it."""
    from sklearn.neighbors import NearestNeighbors

    import cellweave as cw

    t0 = time.perf_counter()
    has = present(mdata, modality)
    if not present(mdata, source).all():
        raise ValueError(f"knn_impute needs {source} measured in every cell")
    pcs = cw.pp.pca(cw.pp.log_normalize(full_matrix(mdata, source)), n_comps=n_comps)
    target = np.log1p(full_matrix(mdata, modality)[has].toarray())
    _, idx = NearestNeighbors(n_neighbors=k).fit(pcs[has]).kneighbors(pcs[~has])
    values = np.expm1(target[idx].mean(axis=1))
    return Result(values, time.perf_counter() - t0)
