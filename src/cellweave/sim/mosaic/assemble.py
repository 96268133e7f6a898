"""Assembly of the simulated mosaic into a MuData, and its ground truth."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..._utils import RandomState
from .batches import MODALITIES, _Config
from .cells import _Cells
from .genome import _Features, _window_prior
from .modalities import _ModalityModel

_FACTOR_KEYS = {
    "rna": "true_library_size",
    "atac": "true_depth",
    "protein": "true_library_size",
    "methylation": "true_depth",
}


# --------------------------------------------------------------------------------------------
# assembly and ground truth
# --------------------------------------------------------------------------------------------


def _symmetric_links(
    var_names: pd.Index, source: Sequence[str], target: Sequence[str], weight: np.ndarray
) -> sp.csr_matrix:
    """Symmetric (n_vars, n_vars) CSR with ``weight`` at (source, target) and (target, source);
    pairs naming a feature absent from ``var_names`` are dropped."""
    i = var_names.get_indexer(pd.Index(source))
    j = var_names.get_indexer(pd.Index(target))
    keep = (i >= 0) & (j >= 0)
    i, j, w = i[keep], j[keep], np.asarray(weight, dtype=np.float32)[keep]
    n = len(var_names)
    rows, cols = np.concatenate([i, j]), np.concatenate([j, i])
    return sp.csr_matrix((np.concatenate([w, w]), (rows, cols)), shape=(n, n))


def _assemble(
    models: dict[str, _ModalityModel],
    blocks: dict[str, dict[int, tuple]],
    batch_ids: dict[str, list[int]],
    cells: _Cells,
    obs: pd.DataFrame,
) -> md.MuData:
    """One MuData from per-batch blocks: modality ``mod`` holds the batches ``batch_ids[mod]``."""
    mods = {}
    for mod, model in models.items():
        ids = batch_ids[mod]
        rows = np.concatenate([np.flatnonzero(cells.batch == b) for b in ids])
        parts = [blocks[mod][b] for b in ids]
        x = parts[0][0] if len(parts) == 1 else sp.vstack([p[0] for p in parts], format="csr")
        mod_obs = obs.iloc[rows][["batch", "cell_type"]].copy()
        mod_obs[_FACTOR_KEYS[mod]] = model.cell_factor[rows]
        adata = ad.AnnData(X=x, obs=mod_obs, var=model.var.copy())
        adata.varm["true_loadings"] = np.ascontiguousarray(model.loadings.T)
        if parts[0][1] is not None:
            adata.layers["true_expression"] = np.concatenate([p[1] for p in parts])
        for key in parts[0][2]:  # the kind's own matrices (methylation: total coverage)
            adata.layers[key] = sp.vstack([p[2][key] for p in parts], format="csr")
        mods[mod] = adata
    with md.set_options(pull_on_update=False):
        mdata = md.MuData(mods)
    # MuData lists cells modality by modality; map the per-cell arrays onto its order
    idx = obs.index.get_indexer(mdata.obs_names)
    mdata.obs = obs.iloc[idx].copy()
    mdata.obsm["true_latent"] = cells.latent[idx]
    return mdata


def _links_frame(features: _Features) -> pd.DataFrame:
    """True links in long format: source gene, target peak/protein, sign, kind."""
    genome, var = features.genome, features.var
    gene_names = genome.genes.index
    links = pd.DataFrame(
        {
            "source": np.concatenate(
                [gene_names[genome.link_gene], gene_names[features.protein_gene]]
            ),
            "target": np.concatenate(
                [var["atac"].index[genome.link_peak], var["protein"].index.to_numpy()]
            ),
            "sign": np.concatenate(
                [genome.link_sign, np.ones(features.protein_gene.size, dtype=np.int8)]
            ).astype(np.int8),
            "kind": pd.Categorical(
                ["gene_peak"] * genome.link_gene.size
                + ["gene_protein"] * features.protein_gene.size,
                categories=["gene_peak", "gene_protein"],
            ),
        }
    )
    links = links.sort_values(["kind", "source", "target"], ignore_index=True)
    links.index = links.index.astype(str)
    return links


def _add_feature_graphs(mdata: md.MuData, links: pd.DataFrame, features: _Features, window: int):
    """``varp["feature_links"]`` (signed truth), ``varp["gene_peak"]`` (window prior) and
    ``varp["gene_protein"]`` (prior by name), each over ``mdata.var_names``."""
    names = mdata.var_names
    mdata.varp["feature_links"] = _symmetric_links(
        names, links["source"], links["target"], links["sign"].to_numpy()
    )
    genes, peaks = features.genome.genes, features.genome.peaks
    if "atac" in mdata.mod and "rna" in mdata.mod:
        gene_idx, peak_idx = _window_prior(genes, peaks, window)
        mdata.varp["gene_peak"] = _symmetric_links(
            names, genes.index[gene_idx], peaks.index[peak_idx], np.ones(gene_idx.size)
        )
    if "protein" in mdata.mod and "rna" in mdata.mod:
        prot = features.var["protein"]
        mdata.varp["gene_protein"] = _symmetric_links(
            names, prot["gene"], prot.index, np.ones(len(prot))
        )


def _params_record(cfg: _Config, random_state: RandomState) -> dict[str, object]:
    """Parameters in an ``.h5mu``-writable form (no ``None``, lists as arrays)."""
    params: dict[str, object] = dict(cfg.p)
    params["batches"] = {b: np.array(m, dtype=object) for b, m in cfg.batches.items()}
    params["batch_sizes"] = dict(zip(cfg.batch_names, cfg.batch_counts.tolist(), strict=True))
    if cfg.missing_types_given:
        params["missing_types"] = {
            b: np.array([t for k, t in enumerate(cfg.type_names) if not cfg.present[i, k]], object)
            for i, b in enumerate(cfg.batch_names)
            if not cfg.present[i].all()
        }
    if isinstance(random_state, int | np.integer):
        params["random_state"] = int(random_state)
    return params


def _ground_truth(
    cfg: _Config,
    cells: _Cells,
    features: _Features,
    models: dict[str, _ModalityModel],
    library_scale: np.ndarray,
    atac_offset: float | None,
    random_state: RandomState,
) -> dict[str, object]:
    names, latent_cols = cfg.batch_names, [f"z{d}" for d in range(cfg.p["latent_dim"])]
    sim: dict[str, object] = {
        "params": _params_record(cfg, random_state),
        "links": _links_frame(features),
        # features x batches: a wide frame would cost one HDF5 dataset per feature
        "batch_shift": {
            m: pd.DataFrame(model.shift.T, index=model.var.index, columns=names)
            for m, model in models.items()
        },
        "library_scale": pd.DataFrame(
            library_scale[:, [MODALITIES.index(m) for m in cfg.used_mods]],
            index=names,
            columns=cfg.used_mods,
        ),
        "cell_type_proportions": pd.DataFrame(
            cells.proportions, index=names, columns=cfg.type_names
        ),
        "type_centres": pd.DataFrame(
            cells.centres.astype(np.float32), index=cfg.type_names, columns=latent_cols
        ),
        "type_directions": pd.DataFrame(
            cells.directions.astype(np.float32), index=cfg.type_names, columns=latent_cols
        ),
    }
    if atac_offset is not None:
        sim["atac_logit_offset"] = atac_offset
    return sim
