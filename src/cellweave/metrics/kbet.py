"""kBET per cell-type label on a connectivity graph, as scib-metrics 0.5.10 ``kbet_per_label``.

:func:`cellweave.metrics.scib.kbet` builds the graph from an embedding and calls
:func:`kbet_from_graph`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import ArpackError, eigsh
from scipy.special import gammainc

from .distributions import as_label_array
from .neighbours import scib_neighbors

__all__ = ["kbet_from_graph"]

_DIFFUSION_EPS = 1e-8


def _kbet_acceptance(nb_idx: np.ndarray, batch: np.ndarray, alpha: float) -> float:
    """Acceptance rate of the kBET chi-square test (neighbour lists include the cell)."""
    codes, uniques = pd.factorize(batch, sort=True)
    n_b = len(uniques)
    expected = np.bincount(codes, minlength=n_b) / codes.size * nb_idx.shape[1]
    nb_codes = codes[nb_idx]
    observed = np.zeros((nb_idx.shape[0], n_b))
    for b in range(n_b):
        observed[:, b] = (nb_codes == b).sum(axis=1)
    stat = (np.square(observed - expected) / expected).sum(axis=1)
    p = 1.0 - gammainc((n_b - 1) / 2.0, stat / 2.0)
    return float((p >= alpha).mean())


def _diffusion_embedding(conn: sparse.csr_matrix, n_comps: int) -> np.ndarray:
    """Multiscale diffusion map of a connectivity graph (scanpy / scib-metrics)."""
    n = conn.shape[0]
    q = np.asarray(conn.sum(axis=0)).ravel()
    k = sparse.diags(1.0 / q) @ conn @ sparse.diags(1.0 / q)
    z = np.sqrt(np.asarray(k.sum(axis=0)).ravel())
    sym = (sparse.diags(1.0 / z) @ k @ sparse.diags(1.0 / z)).astype(np.float64)
    evals, evecs = eigsh(sym, k=min(n - 1, n_comps), which="LM")
    evals = evals.astype(np.float32)[::-1] + np.float32(_DIFFUSION_EPS)
    evecs = evecs.astype(np.float32)[:, ::-1]
    scaled = np.array([e if e == 1 else e / (1 - e) for e in evals], dtype=np.float32)
    return evecs * scaled


def _kbet_diffusion(
    conn: sparse.csr_matrix, batch: np.ndarray, k0: int, n_comps: int, alpha, method: str
):
    try:
        emb = _diffusion_embedding(conn, n_comps)
    except (ValueError, ArpackError):
        return 0.0  # scib-metrics: a failed diffusion map counts as 100% rejection
    _, nb_idx = scib_neighbors(emb, n_neighbors=k0 + 1, method=method)
    return _kbet_acceptance(nb_idx, batch, alpha)


def kbet_from_graph(
    conn: sparse.csr_matrix,
    batches: Any,
    labels: Any,
    *,
    alpha: float = 0.05,
    diffusion_n_comps: int = 100,
    per_label: bool = False,
    neighbors: str = "exact",
) -> float | pd.Series:
    """kBET acceptance per label on a symmetric connectivity graph (UMAP connectivities of
    the 50-NN lists in scib-metrics), averaged over labels; see
    :func:`cellweave.metrics.scib.kbet` for the parameters and the procedure; ``neighbors``
    is the search in the diffusion map (:func:`~cellweave.metrics.neighbours.scib_neighbors`)."""
    n = conn.shape[0]
    bat = as_label_array(batches, "batches", n).astype(str)
    lab = as_label_array(labels, "labels", n).astype(str)
    scores = {}
    for label in np.unique(lab):
        mask = lab == label
        sub = conn[mask][:, mask].tocsr()
        sub.sort_indices()
        b = bat[mask]
        n_obs = sub.shape[0]
        if n_obs < 10 or np.unique(b).size == 1:
            scores[label] = np.nan
            continue
        quarter_mean = int(np.floor(np.mean(pd.Series(b).value_counts()) / 4))
        k0 = int(min(70, max(10, quarter_mean)))
        n_comp, comp = connected_components(sub, connection="strong")
        if n_comp == 1:
            scores[label] = _kbet_diffusion(sub, b, k0, diffusion_n_comps, alpha, neighbors)
            continue
        sizes = np.bincount(comp)
        keep = np.flatnonzero(sizes[comp] >= 3 * k0)
        if keep.size / n_obs >= 0.75:
            subsub = sub[keep][:, keep].tocsr()
            subsub.sort_indices()
            scores[label] = _kbet_diffusion(
                subsub, b[keep], k0, diffusion_n_comps, alpha, neighbors
            )
        else:
            scores[label] = 0.0  # too many small components: 100% rejection
    out = pd.Series(scores, dtype=np.float64)
    if per_label:
        return out
    return float(np.nanmean(out)) if out.notna().any() else float("nan")
