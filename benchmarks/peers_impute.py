"""Graph-based peers of the imputation benchmark (imports guarded: benchmarks only).

Each wrapper has the signature of a cellweave imputation method,
``predict(X1, *, coords, random_state, **options) -> P`` (spots x genes counts in, strictly
positive proportions out), so that it runs through the same molecular cross-validation as the
registered methods (:func:`mcv`). Both peers see every gene the protocol keeps (no
highly-variable selection: the protocol scores all of them) and reconstruct log-normalized
expression; their reconstruction is mapped back to proportions by ``expm1`` (negative
outputs clipped to 0) and :func:`cellweave.impute.proportions.to_proportions` (the floor the
baselines use).

``stagate``
    stagate-modern (``STAGATE_pyG``; Dong & Zhang 2022): ``normalize_total(1e4)`` + ``log1p``,
    ``Cal_Spatial_Net`` (radius graph, the radius the tutorial picks: ~6 neighbours),
    ``train_STAGATE(hidden_dims=[512, 30], save_reconstrction=True)``; its reconstruction
    ``layers["STAGATE_ReX"]``.
``graphst``
    GraphST 1.1.1 (Long et al. 2023): its preprocessing (``normalize_total(1e4)``, ``log1p``,
    ``scale(zero_center=False, max_value=10)``), 3-NN graph, ``GraphST.train()``; its
    reconstruction ``obsm["emb"]`` (the decoder's output in the scaled feature space),
    multiplied back by each gene's scale factor.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import time

import numpy as np
import pandas as pd
from scipy import sparse

from cellweave.impute.evaluate import gene_filter
from cellweave.impute.proportions import to_proportions
from cellweave.metrics.denoising import molecular_split, score_proportions

PEERS = {"stagate": "STAGATE_pyG", "graphst": "GraphST"}


def available_peers() -> list[str]:
    """Peers whose package is importable here."""
    return [name for name, module in PEERS.items() if importlib.util.find_spec(module)]


def _log_normalized(X1: sparse.csr_matrix, coords: np.ndarray):
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(sparse.csr_matrix(X1, dtype=np.float32))
    adata.obs_names = [f"s{i}" for i in range(adata.n_obs)]
    adata.var_names = [f"g{j}" for j in range(adata.n_vars)]
    adata.obsm["spatial"] = np.asarray(coords, dtype=np.float64)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def _neighbour_radius(coords: np.ndarray, k: int = 6) -> float:
    """A radius that reaches about ``k`` neighbours (1.1x the median k-th neighbour
    distance), as STAGATE's tutorials pick ``rad_cutoff`` per platform."""
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)
    return float(1.1 * np.median(dist[:, -1]))


def stagate_predict(X1, *, coords, random_state=0, n_epochs=1000, hidden_dims=(512, 30)):
    """STAGATE's reconstructed expression as proportions (see the module docstring)."""
    import torch
    from STAGATE_pyG import Cal_Spatial_Net, train_STAGATE

    adata = _log_normalized(X1, coords)
    Cal_Spatial_Net(adata, rad_cutoff=_neighbour_radius(adata.obsm["spatial"]), verbose=False)
    with contextlib.redirect_stdout(io.StringIO()):
        train_STAGATE(
            adata,
            hidden_dims=list(hidden_dims),
            n_epochs=n_epochs,
            random_seed=random_state,
            save_reconstrction=True,
            verbose=False,
            device=torch.device("cpu"),
        )
    return to_proportions(np.expm1(np.clip(adata.layers["STAGATE_ReX"], 0, None)))


def graphst_predict(X1, *, coords, random_state=0, epochs=600):
    """GraphST's reconstructed expression as proportions (see the module docstring)."""
    import scanpy as sc
    import torch
    from GraphST.GraphST import GraphST

    adata = _log_normalized(X1, coords)
    logged = np.asarray(adata.X.todense())
    sc.pp.scale(adata, zero_center=False, max_value=10)
    adata.X = np.asarray(adata.X.todense()) if sparse.issparse(adata.X) else adata.X
    scaled = np.asarray(adata.X)
    # the per-gene factor scale() divided by (min over spots: a clipped entry gives a larger ratio)
    factor = np.divide(logged, scaled, out=np.ones_like(logged), where=scaled > 0)
    factor = np.nanmin(np.where(scaled > 0, factor, np.nan), axis=0)  # clipped: larger
    factor = np.where(np.isfinite(factor), factor, 1.0)
    adata.var["highly_variable"] = True  # every kept gene (GraphST skips its own HVG step)
    with contextlib.redirect_stdout(io.StringIO()):
        model = GraphST(adata, device=torch.device("cpu"), epochs=epochs, random_seed=random_state)
        out = model.train()
    rec = np.asarray(out.obsm["emb"], dtype=np.float64) * factor
    return to_proportions(np.expm1(np.clip(rec, 0, None)))


PREDICTORS = {"stagate": stagate_predict, "graphst": graphst_predict}


def mcv(adata, predict, *, seeds=(0, 1, 2), min_spot_fraction=0.1, **options) -> pd.DataFrame:
    """One row per seed: the protocol of :func:`cellweave.impute.evaluate` (genes non-zero in
    ``min_spot_fraction`` of the spots, ``molecular_split(X, random_state=seed)``, scores of
    ``predict(X1)`` on ``X2``) for a predictor that is not registered."""
    X = sparse.csr_matrix(adata.X, dtype=np.float64)
    X = X[:, gene_filter(X, min_spot_fraction)]
    coords = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    rows = []
    for seed in seeds:
        X1, X2 = molecular_split(X, random_state=seed)
        t0, c0 = time.perf_counter(), time.process_time()
        P = predict(X1, coords=coords, random_state=seed, **options)
        row = {"seed": seed, **score_proportions(P, X2)}
        row.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
        rows.append(row)
    return pd.DataFrame(rows)
