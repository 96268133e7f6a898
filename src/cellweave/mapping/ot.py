"""The transport mapping methods: reference cells onto spots (``"softmax"`` and ``"ot"``).

Each returns a *plan*: a sparse ``(n_cells, n_spots)`` matrix of non-negative masses. The
numerics (costs, candidate pairs, Sinkhorn) are :mod:`cellweave.ot`'s.

- :func:`softmax_plan` (``method="softmax"``): each spot spreads its mass over the reference
  cells most similar to it, with weights ``softmax(beta_j * cos(spot_j, cell_i))`` whose
  inverse temperature ``beta_j`` is set per spot so that the weights have a fixed perplexity
  (``exp`` of their entropy). This is semi-relaxed entropic optimal transport: spot marginals
  are exact, cell marginals free (any number of copies of a cell type can be used, which is
  what a balanced reference of cell types needs), with a per-spot entropy constraint instead
  of one global epsilon.
- :func:`entropic_plan` (``method="ot"``): entropic OT on the cosine cost between cells and
  spots (:func:`cellweave.ot.sinkhorn`), dense when small, otherwise restricted to each
  cell's and each spot's nearest candidates (:func:`cellweave.ot.candidate_pairs`,
  :func:`cellweave.ot.sparse_sinkhorn`) so that 100k cells x 50k spots fit in a few GB.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from ..errors import InputError
from ..ot import (
    MAX_DENSE,
    TransportPlan,
    candidate_pairs,
    cosine_cost,
    sinkhorn,
    sparse_plan,
    sparse_sinkhorn,
    topk_similar,
    unit_rows,
)

__all__ = ["entropic_plan", "softmax_plan"]

_PERPLEXITY_STEPS = 25


def _calibrated_softmax(sims: Any, perplexity: float) -> Any:
    """Row softmax of ``beta_i * sims`` with ``beta_i`` bisected so that ``exp(H_i) = perp``.

    ``sims`` is a torch tensor ``(n, k)``; rows whose perplexity cannot reach the target
    (fewer than ``perplexity`` distinct candidates) get the flattest weights allowed. The
    entropy of each trial uses one exponential: ``H = log Z - beta * E_w[s]``.
    """
    import torch

    s = sims - sims.max(dim=1, keepdim=True).values  # <= 0, so Z >= 1
    s32 = s.to(torch.float32)
    target = float(np.log(perplexity))
    lo = torch.full((s.shape[0], 1), -3.0, device=s.device)  # log10 beta
    hi = torch.full_like(lo, 5.0)
    for _ in range(_PERPLEXITY_STEPS):
        mid = (lo + hi) / 2
        beta = torch.pow(10.0, mid)
        e = torch.exp(s32 * beta)
        z = e.sum(dim=1, keepdim=True)
        entropy = torch.log(z) - beta * (e * s32).sum(dim=1, keepdim=True) / z
        flat = entropy > target  # too flat: sharpen (raise beta)
        lo = torch.where(flat, mid, lo)
        hi = torch.where(flat, hi, mid)
    beta = torch.pow(10.0, (lo + hi) / 2).to(s.dtype)
    return torch.softmax(s * beta, dim=1)


def softmax_plan(
    F_sc: np.ndarray,
    F_sp: np.ndarray,
    *,
    perplexity: float = 50.0,
    n_candidates: int | None = None,
    spot_mass: np.ndarray | None = None,
    device: str = "auto",
) -> sparse.csr_matrix:
    """Map each spot onto its most similar cells with perplexity-calibrated softmax weights.

    Parameters
    ----------
    F_sc, F_sp
        ``(n_cells, d)`` and ``(n_spots, d)`` features (compared by cosine similarity).
    perplexity
        Effective number of cells per spot (``exp`` of the weights' entropy). Larger values
        average more cells (smoother predictions), smaller values sharpen the mapping.
    n_candidates
        Cells considered per spot (default ``4 * perplexity``); the plan has this many
        entries per spot at most.
    spot_mass
        Mass of each spot (default ``1 / n_spots``).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or ``"mps"``
        (:func:`cellweave.device.parse_device`).

    Returns
    -------
    ``(n_cells, n_spots)`` CSR plan whose column ``j`` sums to ``spot_mass[j]``.
    """
    import torch

    n_cells, n_spots = F_sc.shape[0], F_sp.shape[0]
    if not perplexity >= 1:
        raise InputError(f"perplexity={perplexity!r} must be >= 1; pass e.g. perplexity=50")
    k = int(n_candidates) if n_candidates is not None else int(np.ceil(4 * perplexity))
    k = max(1, min(k, n_cells))
    perplexity = min(float(perplexity), float(k))
    index, sims = topk_similar(unit_rows(F_sp), unit_rows(F_sc), k=k, device=device, sort=False)
    weights = _calibrated_softmax(torch.as_tensor(sims, dtype=torch.float64), perplexity)
    mass = np.full(n_spots, 1.0 / n_spots) if spot_mass is None else np.asarray(spot_mass)
    values = (weights.numpy() * mass[:, None]).ravel()
    # (spots x cells) CSR, transposed: a CSC view of the cells x spots plan, then CSR
    plan_t = sparse.csr_matrix(
        (values, index.ravel(), np.arange(0, n_spots * k + 1, k)), shape=(n_spots, n_cells)
    )
    return plan_t.T.tocsr()


def entropic_plan(
    F_sc: np.ndarray,
    F_sp: np.ndarray,
    *,
    epsilon: float = 0.05,
    unbalanced: float | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
    n_candidates: int | None = None,
    max_dense: int = MAX_DENSE,
    max_iter: int = 2000,
    tol: float = 1e-7,
    device: str = "auto",
) -> sparse.csr_matrix:
    """Entropic OT between cells and spots on the cosine cost ``1 - cos(cell, spot)``.

    Parameters
    ----------
    F_sc, F_sp
        ``(n_cells, d)`` and ``(n_spots, d)`` features.
    epsilon
        Entropic regularization (the cost lies in [0, 2]).
    unbalanced
        ``None``: exact marginals. A number ``rho``: both marginals relaxed with weight
        ``rho`` (KL), so that cells can be used more or less than their mass when the
        reference's composition differs from the tissue's and totals may differ.
    a, b
        Cell and spot masses (default uniform, each summing to 1).
    n_candidates
        Restrict the plan to each spot's ``n_candidates`` most similar cells (and, for
        balanced OT, each cell's most similar spots). ``None``: dense when
        ``n_cells * n_spots <= max_dense``, else 50 candidates.
    max_dense
        Largest dense problem (entries).
    max_iter, tol, device
        See :func:`cellweave.ot.sinkhorn`.

    Returns
    -------
    ``(n_cells, n_spots)`` CSR plan (dense solutions: entries below ``1e-12`` of the total
    mass dropped).
    """
    n_cells, n_spots = F_sc.shape[0], F_sp.shape[0]
    if not epsilon > 0:
        raise InputError(f"epsilon={epsilon!r} must be > 0; pass e.g. epsilon=0.05")
    a = np.full(n_cells, 1.0 / n_cells) if a is None else np.asarray(a, dtype=np.float64)
    b = np.full(n_spots, 1.0 / n_spots) if b is None else np.asarray(b, dtype=np.float64)
    if n_candidates is None and n_cells * n_spots > max_dense:
        n_candidates = 50
    opts = dict(
        epsilon=epsilon,
        rho_a=unbalanced,
        rho_b=unbalanced,
        max_iter=max_iter,
        tol=tol,
        device=device,
    )
    if n_candidates is None:
        return sparse_plan(sinkhorn(cosine_cost(F_sc, F_sp), a, b, **opts))
    sides = "both" if unbalanced is None else "spots"
    cells, spots, cost = candidate_pairs(
        F_sc, F_sp, k=int(n_candidates), sides=sides, device=device
    )
    values = sparse_sinkhorn(cells, spots, cost, a, b, **opts)
    return TransportPlan.from_pairs(cells, spots, values, (n_cells, n_spots)).matrix
