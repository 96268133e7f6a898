"""Peers of the mapping benchmark as gene predictors (imports guarded: benchmarks only).

Each wrapper follows the peer's documented API with its own defaults, called the way
SpatialBenchmarking (Li et al. 2022, ``Benchmarking/SpatialGenes.py``) calls it, and has the
gene-predictor signature of :mod:`cellweave.mapping.evaluate`:
``predict(adata_sc, adata_sp, genes, *, random_state=0)``. Each returns the peer's output for
the raw scheme and, for the normalized scheme, that output divided by the peer's own
predicted total over the training genes at each spot (its relative expression: the same
courtesy as cellweave's ``scale="proportions"``).

``tangram``
    tangram-sc, ``mode="cells"`` on CPU: ``pp_adatas`` (training genes = the spatial genes),
    ``map_cells_to_space`` (defaults: 1000 epochs, lr 0.1, ``density_prior="rna_count_based"``),
    ``project_genes``.
``gimvi``
    scvi-tools ``scvi.external.GIMVI`` on the shared genes (training + held-out, as
    SpatialBenchmarking), default training (200 epochs), ``get_imputed_values(normalized=False)``.
``novosparc``
    novoSpaRc's reconstruction with the spatial coordinates (as SpatialBenchmarking):
    shortest-path costs on 5-NN graphs of expression (2,000 most dispersed reference genes)
    and locations, linear cost between max-scaled marker expression, fused
    Gromov-Wasserstein ``alpha_linear=0.5``, ``epsilon=5e-3``; prediction ``dge^T @ gw``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.spatial.distance import cdist

from cellweave.mapping.features import to_dense

PEERS = {"tangram": "tangram", "gimvi": "scvi", "novosparc": "novosparc"}


def available_peers() -> list[str]:
    """Peers whose package is importable here."""
    return [name for name, module in PEERS.items() if importlib.util.find_spec(module)]


def _per_scheme(test: np.ndarray, train_total: np.ndarray) -> dict[str, np.ndarray]:
    """The peer's output for the raw scheme; for the normalized one, divided by the peer's own
    predicted total over the training genes (its relative expression, the construction
    cellweave's ``scale="proportions"`` uses)."""
    train_total = np.asarray(train_total, dtype=np.float64).ravel()
    rel = test / np.where(train_total > 0, train_total, 1.0)[:, None]
    return {"normalized": rel, "raw": test}


def _training_genes(adata_sc: AnnData, adata_sp: AnnData) -> list[str]:
    return [g for g in adata_sp.var_names if g in set(adata_sc.var_names)]


# ----------------------------------------------------------------------------- Tangram


def _tangram_map(adata_sc: AnnData, adata_sp: AnnData, random_state: int):
    import tangram as tg

    logging.getLogger().setLevel(logging.WARNING)
    sc_copy, sp_copy = adata_sc.copy(), adata_sp.copy()  # pp_adatas edits names in place
    tg.pp_adatas(sc_copy, sp_copy, genes=None)
    ad_map = tg.map_cells_to_space(
        sc_copy, sp_copy, mode="cells", device="cpu", random_state=random_state, verbose=False
    )
    return ad_map, sc_copy, sp_copy


def tangram_predict(
    adata_sc: AnnData, adata_sp: AnnData, genes: Sequence[str], *, random_state: int = 0
) -> np.ndarray:
    """Tangram (cells mode, CPU) projected genes; genes Tangram drops (all-zero) are 0."""
    import tangram as tg

    ad_map, sc_copy, _ = _tangram_map(adata_sc, adata_sp, random_state)
    ad_ge = tg.project_genes(ad_map, sc_copy)
    names = pd.Index(ad_ge.var_names)
    out = np.zeros((adata_sp.n_obs, len(genes)))
    X = to_dense(ad_ge.X)
    for j, g in enumerate(genes):
        i = names.get_indexer([g.lower()])[0]
        if i >= 0:
            out[:, j] = X[:, i]
    train = names.get_indexer([g.lower() for g in _training_genes(adata_sc, adata_sp)])
    return _per_scheme(out, X[:, train[train >= 0]].sum(axis=1))


def tangram_fractions(
    adata_sc: AnnData, adata_sp: AnnData, *, cell_type_key: str = "cell_type", random_state=0
) -> pd.DataFrame:
    """Tangram's cell-type fractions: ``project_cell_annotations`` rows scaled to sum 1."""
    import tangram as tg

    ad_map, _, sp_copy = _tangram_map(adata_sc, adata_sp, random_state)
    tg.project_cell_annotations(ad_map, sp_copy, annotation=cell_type_key)
    scores = pd.DataFrame(sp_copy.obsm["tangram_ct_pred"]).clip(lower=0)
    scores.index = adata_sp.obs_names
    return scores.div(scores.sum(axis=1).replace(0, 1), axis=0)


# ----------------------------------------------------------------------------- gimVI


def gimvi_predict(
    adata_sc: AnnData, adata_sp: AnnData, genes: Sequence[str], *, random_state: int = 0
) -> np.ndarray:
    """gimVI imputation of ``genes`` at the spatial cells (raw-scale rates)."""
    import scvi
    from scvi.external import GIMVI

    scvi.settings.seed = random_state
    scvi.settings.verbosity = logging.WARNING
    train = _training_genes(adata_sc, adata_sp)
    seq = AnnData(to_dense(adata_sc[:, train + list(genes)].X))
    seq.var_names = train + list(genes)
    # gimVI's library prior is log(total): reference cells without counts make it -inf
    seq = seq[seq.X.sum(axis=1) > 0].copy()
    spatial = AnnData(to_dense(adata_sp[:, train].X))
    spatial.var_names = train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GIMVI.setup_anndata(seq)
        GIMVI.setup_anndata(spatial)
        model = GIMVI(seq, spatial)
        model.train(accelerator="cpu", enable_progress_bar=False)
        _, imputed = model.get_imputed_values(normalized=False)
    imputed = np.asarray(imputed, dtype=np.float64)
    return _per_scheme(imputed[:, len(train) :], imputed[:, : len(train)].sum(axis=1))


# ----------------------------------------------------------------------------- novoSpaRc


def novosparc_predict(
    adata_sc: AnnData,
    adata_sp: AnnData,
    genes: Sequence[str],
    *,
    random_state: int = 0,
    spatial_key: str = "spatial",
) -> np.ndarray:
    """novoSpaRc reconstruction (SpatialBenchmarking's call); deterministic."""
    import novosparc as nc

    dge = to_dense(adata_sc.X)
    names = pd.Index(adata_sc.var_names)
    dispersion = np.divide(np.var(dge, axis=0), np.mean(dge, axis=0) + 0.0001)
    dge_hvg = dge[:, np.argsort(dispersion)[-2000:]]
    locations = np.asarray(adata_sp.obsm[spatial_key], dtype=np.float64)
    p_location, p_expression = nc.rc.create_space_distributions(len(locations), dge.shape[0])
    cost_expression, cost_locations = nc.rc.setup_for_OT_reconstruction(
        dge_hvg, locations, num_neighbors_source=5, num_neighbors_target=5, verbose=False
    )
    train = _training_genes(adata_sc, adata_sp)
    markers = names.get_indexer(train)
    insitu = to_dense(adata_sp[:, train].X)
    sc_markers = dge[:, markers]
    cost_marker_genes = cdist(sc_markers / np.amax(sc_markers), insitu / np.amax(insitu))
    gw = nc.rc.gromov_wasserstein_adjusted_norm(
        cost_marker_genes,
        cost_expression,
        cost_locations,
        0.5,
        p_expression,
        p_location,
        "square_loss",
        epsilon=5e-3,
        verbose=False,
    )
    sdge = dge.T @ gw  # genes x locations
    return _per_scheme(sdge[names.get_indexer(list(genes))].T, sdge[markers].sum(axis=0))


PREDICTORS = {
    "tangram": tangram_predict,
    "gimvi": gimvi_predict,
    "novosparc": novosparc_predict,
}


def register_peers(names: Sequence[str] | None = None) -> list[str]:
    """Register the importable peers with :func:`cellweave.mapping.evaluate.register_method`."""
    from cellweave.mapping.evaluate import register_method

    os.environ.setdefault("TQDM_DISABLE", "1")
    chosen = [n for n in (names or PEERS) if n in available_peers()]
    for name in chosen:
        register_method(name, PREDICTORS[name], kind="peer")
    return chosen
