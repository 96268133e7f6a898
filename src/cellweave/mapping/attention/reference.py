"""The reference side of the attention mapper: cell profiles, types and candidate cells.

Every reference cell keeps its count profile on the shared genes, shrunk toward its type's
mean composition (``shrink``: ``x~_c = t_c ((1 - shrink) x_c / t_c + shrink m_type(c))``, so
a cell keeps its library ``t_c`` and loses most of its sampling noise). A spot attends over
``top_k`` candidate cells chosen by cosine similarity on the principal axes of both
platforms' panels (split evenly over the cell types when types are known, so every type has
candidates), so the cost is spots x ``top_k``, not spots x cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ot import topk_similar, unit_rows
from ...sim import thin_counts
from .views import log_panel, zscore

__all__ = [
    "Reference",
    "candidates",
    "pooled_counts",
    "principal_axes",
    "pseudo_spots",
    "reference_cells",
]

#: Principal axes of the candidate search.
N_AXES = 30


@dataclass
class Reference:
    """Reference cells on the shared genes (rows: the used cells).

    Attributes
    ----------
    panel
        ``(n_cells, n_genes)`` panel inputs (as a spot's panel view).
    profiles
        ``(n_cells, n_genes)`` count profiles shrunk toward the type means.
    codes
        ``(n_cells,)`` type code of every cell (all 0 without types).
    types
        Type names (``["all"]`` without types).
    pooled
        ``(n_types, n_genes)`` every type's pooled counts (float64): the one per-type sum of
        the reference, read by the type means, the reliability's leave-one-out recall and
        the choice of pseudo-spots.
    """

    panel: np.ndarray
    profiles: np.ndarray
    codes: np.ndarray
    types: list[str]
    pooled: np.ndarray

    @property
    def type_totals(self) -> np.ndarray:
        """``(n_types,)`` every type's pooled total counts."""
        return self.pooled.sum(axis=1)

    @property
    def n_types(self) -> int:
        return len(self.types)


def reference_cells(
    counts: np.ndarray,
    codes: np.ndarray,
    types: list[str],
    *,
    shrink: float,
    profiles: str = "normalized",
) -> Reference:
    """The :class:`Reference` of ``counts`` (cells with a non-zero total) typed ``codes``.

    A type's mean composition is its pooled counts over its pooled total (the Poisson
    estimate: a shallow cell weighs by its counts, not as much as a deep one).
    ``profiles="normalized"``: every cell given its type's mean library (without types: the
    mean library), so that a spot mixes cells as a tissue does, a cell of a type contributing
    that type's usual total, and the attention weights are cell-number fractions;
    ``"counts"``: each cell its own library."""
    counts = np.asarray(counts, dtype=np.float64)
    n_types = len(types)
    if n_types < 2:  # no cell types: no type mean to shrink toward
        shrink = 0.0
    totals = counts.sum(axis=1, keepdims=True)
    comp = counts / np.maximum(totals, 1e-12)
    n_cells = np.maximum(np.bincount(codes, minlength=n_types), 1)
    type_totals = np.bincount(codes, weights=totals[:, 0], minlength=n_types)
    if profiles == "normalized":
        totals = (type_totals / n_cells)[codes][:, None]
    pooled = pooled_counts(counts, codes, n_types)
    means = pooled / np.maximum(type_totals, 1e-12)[:, None]
    profiles = totals * ((1.0 - shrink) * comp + shrink * means[codes])
    return Reference(
        panel=zscore(log_panel(counts)),
        profiles=profiles.astype(np.float32),
        codes=np.asarray(codes, dtype=np.int64),
        types=list(types),
        pooled=pooled,
    )


def pooled_counts(counts: np.ndarray, codes: np.ndarray, n_types: int) -> np.ndarray:
    """``(n_types, n_genes)`` the summed ``counts`` (cells x genes) of every type ``codes``
    (float64)."""
    pooled = np.zeros((n_types, counts.shape[1]))
    np.add.at(pooled, codes, np.asarray(counts, dtype=np.float64))
    return pooled


def principal_axes(*panels: np.ndarray, n_axes: int = N_AXES) -> np.ndarray:
    """``(n_genes, n_axes)`` principal axes of the stacked panels (signs fixed)."""
    M = np.vstack(panels).astype(np.float64)
    M = M - M.mean(axis=0)
    cov = M.T @ M
    _, vecs = np.linalg.eigh(cov)
    axes = vecs[:, ::-1][:, : min(n_axes, M.shape[1])]
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
    return (axes * np.where(signs == 0, 1.0, signs)).astype(np.float32)


def candidates(
    spot_panel: np.ndarray,
    ref: Reference,
    axes: np.ndarray,
    *,
    top_k: int | None,
    device: str = "cpu",
) -> np.ndarray:
    """``(n_spots, k)`` candidate cells of every spot, grouped by type (``top_k`` 0 or
    ``None``, or at least the number of cells: every cell)."""
    n_cells = ref.panel.shape[0]
    if not top_k or top_k >= n_cells:
        order = np.argsort(ref.codes, kind="stable")
        return np.broadcast_to(order, (spot_panel.shape[0], n_cells)).copy()
    A = unit_rows(spot_panel @ axes)
    B = unit_rows(ref.panel @ axes)
    per_type = max(1, -(-int(top_k) // ref.n_types))
    blocks = []
    for t in range(ref.n_types):
        members = np.flatnonzero(ref.codes == t)
        k = min(per_type, len(members))
        idx, _ = topk_similar(A, B[members], k=k, device=device)
        blocks.append(members[idx])
    return np.hstack(blocks)


def pseudo_spots(
    counts: np.ndarray,
    codes: np.ndarray,
    n_types: int,
    depths: np.ndarray,
    *,
    n: int,
    max_cells: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` spots pooled from reference cells, with their cell-number fractions: the
    labelled rows that teach the type weights what a mixture looks like.

    Each pools 1 to ``max_cells`` cells (uniform), each cell of a type drawn uniformly
    among the types present (so the reference's type frequencies do not become a prior),
    its counts summed and binomially thinned (:func:`cellweave.sim.thin_counts`, as the
    simulator's pseudo-spots) to a depth drawn from the spots' totals ``depths``. Returns
    ``(pooled counts (n, n_genes), fractions (n, n_types))``.
    """
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts)
    members = [np.flatnonzero(codes == t) for t in range(n_types)]
    present = np.array([t for t in range(n_types) if len(members[t])])
    pooled = np.zeros((n, counts.shape[1]), dtype=np.float64)
    fractions = np.zeros((n, n_types), dtype=np.float64)
    sizes = rng.integers(1, max(1, int(max_cells)) + 1, size=n)
    for i, size in enumerate(sizes):
        types = rng.choice(present, size=size)
        cells = np.array([rng.choice(members[t]) for t in types])
        pooled[i] = counts[cells].sum(axis=0)
        np.add.at(fractions[i], types, 1.0 / size)
    target = rng.choice(np.asarray(depths, dtype=np.float64), size=n)
    thinned = thin_counts(pooled, target, rng, totals=pooled.sum(axis=1))
    return thinned.toarray().astype(np.float64), fractions
