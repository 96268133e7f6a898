"""The unintegrated embedding of a mosaic data set: the reference of scib's PCR comparison.

scib-metrics' Benchmarker scores batch correction partly by *PCR comparison*: how much less
of the embedding's variance the batch explains after integration than before
(:func:`cellweave.metrics.pcr_comparison`). "Before" is an embedding of the raw data:
:func:`unintegrated_embedding` builds the one the mosaic benchmark (and the peers' published
scores) use: per modality, on the cells that measured it,

* RNA (and any count modality of another kind): PCA of log-normalised counts;
* ATAC: LSI (Signac-style TF-IDF, truncated SVD, the first, depth, component dropped, each
  component standardised);
* protein: PCA of ``log1p`` counts centred per cell (a CLR);
* methylation: PCA of the methylated rate (``X / layers["total"]``);

each block scaled to unit total variance (one weight per modality), zero for the cells that
did not measure it, the blocks side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from ..errors import InputError
from .kinds import infer_kind

__all__ = ["lsi", "unintegrated_embedding"]


def _tfidf(x: sparse.csr_matrix) -> sparse.csr_matrix:
    """Signac-style TF-IDF: ``log1p(1e4 * (x / cell total) * log(1 + n_cells / peak total))``."""
    x = sparse.csr_matrix(x, dtype=np.float64)
    tf = sparse.diags(1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)) @ x
    idf = np.log1p(x.shape[0] / np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0))
    out = (tf @ sparse.diags(idf)).tocsr()
    out.data = np.log1p(out.data * 1e4)
    return out


def lsi(x: Any, n_comps: int = 30, random_state: int = 0) -> np.ndarray:
    """LSI of peak counts ``x`` (cells x peaks): TF-IDF, truncated SVD, the first component
    (depth) dropped, each component standardised; ``(n_cells, n_comps)``."""
    from sklearn.decomposition import TruncatedSVD

    svd = TruncatedSVD(n_components=n_comps + 1, random_state=random_state)
    emb = svd.fit_transform(_tfidf(sparse.csr_matrix(x)))[:, 1:]
    return (emb - emb.mean(axis=0)) / emb.std(axis=0)


def _unit_variance(emb: np.ndarray) -> np.ndarray:
    """Scale a block so that its total variance is 1 (equal weight per modality)."""
    total = emb.var(axis=0).sum()
    return emb / np.sqrt(total) if total > 0 else emb


def _block(adata: Any, kind: str, n_comps: int, random_state: int) -> np.ndarray:
    """The embedding of one modality's cells (see the module docstring)."""
    from .. import pp

    x = adata.X[:] if getattr(adata, "isbacked", False) else adata.X
    x = sparse.csr_matrix(x, dtype=np.float32)
    if kind == "atac":
        return lsi(x, n_comps, random_state)
    if kind == "protein":
        logx = np.log1p(x.toarray())
        return pp.pca(logx - logx.mean(axis=1, keepdims=True), n_comps=n_comps)
    if kind == "methylation" and "total" in adata.layers:
        total = sparse.csr_matrix(adata.layers["total"], dtype=np.float32).toarray()
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(total > 0, x.toarray() / total, 0.0)
        return pp.pca(rate, n_comps=n_comps, random_state=random_state)
    return pp.pca(pp.log_normalize(x), n_comps=n_comps, random_state=random_state)


def unintegrated_embedding(
    data: Any,
    *,
    modality: str | None = None,
    modality_types: dict[str, str] | None = None,
    n_comps: int = 30,
    random_state: int = 0,
) -> np.ndarray:
    """The unintegrated embedding of ``data`` (see the module docstring), e.g. the
    ``pre_embedding`` of :func:`cellweave.metrics.scib.scib_scores` (PCR comparison).

    Parameters
    ----------
    data
        MuData whose modalities hold the cells that measured them (raw counts), or an
        AnnData of one modality with ``modality=`` (its name, which tells its kind).
    modality
        The modality an AnnData holds.
    modality_types
        Kind per modality name (``"rna"``, ``"atac"``, ``"protein"``, ``"methylation"``);
        default: from the names, as :class:`~.model.MosaicModel` does.
    n_comps
        Components per modality.
    random_state
        Seed of the PCA / SVD solvers.

    Returns
    -------
    ``(n_obs, n_blocks x n_comps)`` float32 array in the order of ``data.obs_names``.
    """
    types = dict(modality_types or {})
    if not hasattr(data, "mod"):
        if modality is None:
            raise InputError(
                "an AnnData needs modality= (its modality's name, e.g. 'rna'); or pass a MuData"
            )
        mods = {modality: (data, np.ones(data.n_obs, dtype=bool))}
    else:
        mods = {}
        for name, adata in data.mod.items():
            mask = data.obs_names.isin(adata.obs_names)
            if adata.n_obs and not adata.obs_names.equals(data.obs_names[mask]):
                adata = adata[data.obs_names[mask]]
            mods[name] = (adata, mask)
    blocks = []
    for name, (adata, mask) in mods.items():
        if not mask.any():
            continue
        kind = types.get(name) or infer_kind(name)
        emb = _block(adata, kind, n_comps, random_state)
        block = np.zeros((len(mask), emb.shape[1]), dtype=np.float32)
        block[mask] = _unit_variance(emb)
        blocks.append(block)
    if not blocks:
        raise InputError("the data has no cells in any modality: nothing to embed")
    return np.hstack(blocks)
