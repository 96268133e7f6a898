"""Transport solvers that map reference cells onto spots (torch, CPU or CUDA).

Every solver returns a *plan*: a sparse ``(n_cells, n_spots)`` matrix of non-negative masses.

- :func:`softmax_plan` (the default mapping): each spot spreads its mass over the reference
  cells most similar to it, with weights ``softmax(beta_j * cos(spot_j, cell_i))`` whose
  inverse temperature ``beta_j`` is set per spot so that the weights have a fixed perplexity
  (``exp`` of their entropy). This is semi-relaxed entropic optimal transport: spot marginals
  are exact, cell marginals free (any number of copies of a cell type can be used, which is
  what a balanced reference of cell types needs), with a per-spot entropy constraint instead
  of one global epsilon.
- :func:`sinkhorn` (dense) and :func:`sparse_sinkhorn` (on a set of candidate pairs):
  log-domain Sinkhorn iterations for entropic OT, balanced or unbalanced (KL-relaxed
  marginals, Chizat et al. 2018), as in POT's ``sinkhorn_log`` / ``sinkhorn_knopp_unbalanced``.
- :func:`entropic_plan`: cosine cost between cells and spots, dense when small, otherwise
  restricted to each cell's and each spot's nearest candidates so that 100k cells x 50k spots
  fit in a few GB.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from .._utils import resolve_device
from ..errors import InputError

__all__ = [
    "MAX_DENSE",
    "candidate_pairs",
    "entropic_plan",
    "sinkhorn",
    "softmax_plan",
    "sparse_sinkhorn",
    "topk_similar",
]

#: Largest dense cells x spots problem (entries) the solvers build; beyond it they work on
#: candidate pairs (2**25 entries: 256 MB per float64 matrix).
MAX_DENSE = 2**25
# Entries of one similarity block computed at once in the candidate search.
_BLOCK_ENTRIES = 2**24
_PERPLEXITY_STEPS = 25


def _torch():
    import torch

    return torch


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _cosine_cost(F_sc: np.ndarray, F_sp: np.ndarray) -> np.ndarray:
    """Dense float64 ``1 - cosine similarity`` between the rows of ``F_sc`` and ``F_sp``."""
    return 1.0 - _unit(F_sc).astype(np.float64) @ _unit(F_sp).astype(np.float64).T


def _sparse_plan(plan: np.ndarray) -> sparse.csr_matrix:
    """A dense plan as CSR, entries below ``1e-12`` of its total mass dropped."""
    plan = np.asarray(plan, dtype=np.float64)
    plan[plan < 1e-12 * plan.sum()] = 0.0
    return sparse.csr_matrix(plan)


def topk_similar(
    A: np.ndarray,
    B: np.ndarray,
    *,
    k: int,
    device: str = "cpu",
    sort: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``B`` with the largest dot product with each row of ``A``.

    Computed in blocks of rows of ``A`` (at most ``2**24`` similarities at once), so memory
    stays ``O((n_A + n_B) * (d + k))``.

    Returns
    -------
    ``(index, similarity)``, both ``(n_A, k)``, sorted by decreasing similarity when
    ``sort`` (otherwise in no particular order, which is faster).
    """
    torch = _torch()
    k = int(min(k, B.shape[0]))
    dev = torch.device(resolve_device(device))
    Bt = torch.as_tensor(np.ascontiguousarray(B, dtype=np.float32), device=dev)
    step = max(1, _BLOCK_ENTRIES // max(1, B.shape[0]))
    index = np.empty((A.shape[0], k), dtype=np.int64)
    sims = np.empty((A.shape[0], k), dtype=np.float32)
    for start in range(0, A.shape[0], step):
        block = torch.as_tensor(
            np.ascontiguousarray(A[start : start + step], dtype=np.float32), device=dev
        )
        values, idx = torch.topk(block @ Bt.T, k, dim=1, sorted=sort)
        index[start : start + step] = idx.cpu().numpy()
        sims[start : start + step] = values.cpu().numpy()
    return index, sims


def _calibrated_softmax(sims: Any, perplexity: float) -> Any:
    """Row softmax of ``beta_i * sims`` with ``beta_i`` bisected so that ``exp(H_i) = perp``.

    ``sims`` is a torch tensor ``(n, k)``; rows whose perplexity cannot reach the target
    (fewer than ``perplexity`` distinct candidates) get the flattest weights allowed. The
    entropy of each trial uses one exponential: ``H = log Z - beta * E_w[s]``.
    """
    torch = _torch()
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
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    ``(n_cells, n_spots)`` CSR plan whose column ``j`` sums to ``spot_mass[j]``.
    """
    torch = _torch()
    n_cells, n_spots = F_sc.shape[0], F_sp.shape[0]
    if not perplexity >= 1:
        raise InputError(f"perplexity={perplexity!r} must be >= 1; pass e.g. perplexity=50")
    k = int(n_candidates) if n_candidates is not None else int(np.ceil(4 * perplexity))
    k = max(1, min(k, n_cells))
    perplexity = min(float(perplexity), float(k))
    index, sims = topk_similar(_unit(F_sp), _unit(F_sc), k=k, device=device, sort=False)
    weights = _calibrated_softmax(torch.as_tensor(sims, dtype=torch.float64), perplexity)
    mass = np.full(n_spots, 1.0 / n_spots) if spot_mass is None else np.asarray(spot_mass)
    values = (weights.numpy() * mass[:, None]).ravel()
    # (spots x cells) CSR, transposed: a CSC view of the cells x spots plan, then CSR
    plan_t = sparse.csr_matrix(
        (values, index.ravel(), np.arange(0, n_spots * k + 1, k)), shape=(n_spots, n_cells)
    )
    return plan_t.T.tocsr()


# ----------------------------------------------------------------------- Sinkhorn


def _fraction(rho: float | None, epsilon: float) -> float:
    """Exponent of the scaling update: 1 (balanced, ``rho=None``), ``rho / (rho + eps)``."""
    if rho is None:
        return 1.0
    if rho < 0:
        raise InputError(f"unbalanced marginal weight {rho} must be >= 0 (or None: balanced)")
    return float(rho) / (float(rho) + epsilon)


def _check_marginals(a: np.ndarray, b: np.ndarray, balanced: bool) -> None:
    if (a < 0).any() or (b < 0).any() or not np.isfinite(a).all() or not np.isfinite(b).all():
        raise InputError("marginals a and b must be finite and non-negative")
    if a.sum() <= 0 or b.sum() <= 0:
        raise InputError("marginals a and b must have positive totals")
    if balanced and not np.isclose(a.sum(), b.sum(), rtol=1e-6):
        raise InputError(
            f"balanced OT needs equal totals (a sums to {a.sum():.6g}, b to {b.sum():.6g}): "
            "rescale one of them, or pass unbalanced=... to relax the marginals"
        )


def _log_marginals(a, b, *, rho_a, rho_b, epsilon, device):
    """Checked marginals as log tensors on the device, and the scaling update exponents:
    ``(device, log a, log b, fraction_a, fraction_b)``."""
    torch = _torch()
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _check_marginals(a, b, rho_a is None and rho_b is None)
    dev = torch.device(resolve_device(device))
    la = torch.log(torch.as_tensor(a, device=dev))
    lb = torch.log(torch.as_tensor(b, device=dev))
    return dev, la, lb, _fraction(rho_a, epsilon), _fraction(rho_b, epsilon)


def sinkhorn(
    C: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    epsilon: float = 0.05,
    rho_a: float | None = None,
    rho_b: float | None = None,
    max_iter: int = 2000,
    tol: float = 1e-7,
    device: str = "auto",
) -> np.ndarray:
    """Entropic OT plan for a dense cost, log-domain Sinkhorn (balanced or unbalanced).

    Minimizes ``<C, P> + epsilon * KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)``,
    where ``rho=None`` makes that marginal a hard constraint and ``rho=0`` leaves it free.

    Parameters
    ----------
    C
        ``(n, m)`` cost.
    a, b
        Row and column masses (equal totals when both marginals are hard).
    epsilon
        Entropic regularization, in the units of ``C``.
    rho_a, rho_b
        KL weights of the relaxed marginals (``None``: exact marginal).
    max_iter, tol
        Iterations at most; stop when the dual potentials change less than ``tol * epsilon``.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    ``(n, m)`` float64 plan.
    """
    torch = _torch()
    dev, la, lb, fa, fb = _log_marginals(
        a, b, rho_a=rho_a, rho_b=rho_b, epsilon=epsilon, device=device
    )
    Ct = torch.as_tensor(np.asarray(C, dtype=np.float64), device=dev)
    f = torch.zeros_like(la)
    g = torch.zeros_like(lb)
    K = -Ct / epsilon
    for _ in range(int(max_iter)):
        f_new = fa * epsilon * (la - torch.logsumexp(K + g[None, :] / epsilon, dim=1))
        g_new = fb * epsilon * (lb - torch.logsumexp(K + f_new[:, None] / epsilon, dim=0))
        f_new = torch.nan_to_num(f_new, neginf=-1e30)  # zero-mass rows: no plan entries
        g_new = torch.nan_to_num(g_new, neginf=-1e30)
        change = max(float(torch.max(torch.abs(f_new - f))), float(torch.max(torch.abs(g_new - g))))
        f, g = f_new, g_new
        if change < tol * epsilon:
            break
    plan = torch.exp(K + (f[:, None] + g[None, :]) / epsilon)
    return plan.cpu().numpy()


def _grouped_logsumexp(values: Any, groups: Any, n: int) -> Any:
    """``log(sum(exp(values)))`` per group ``0..n-1`` (``-inf`` for empty groups)."""
    torch = _torch()
    top = torch.full((n,), -torch.inf, dtype=values.dtype, device=values.device)
    top = top.scatter_reduce(0, groups, values, reduce="amax", include_self=True)
    safe = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = torch.zeros_like(top).index_add_(0, groups, torch.exp(values - safe[groups]))
    return torch.log(total) + safe


def sparse_sinkhorn(
    rows: np.ndarray,
    cols: np.ndarray,
    cost: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    epsilon: float = 0.05,
    rho_a: float | None = None,
    rho_b: float | None = None,
    max_iter: int = 2000,
    tol: float = 1e-7,
    device: str = "auto",
) -> np.ndarray:
    """Log-domain Sinkhorn restricted to the pairs ``(rows[e], cols[e])`` (others: no mass).

    Same objective and parameters as :func:`sinkhorn`; every row and column must have at
    least one pair when its marginal is exact. Returns the plan's value on every pair.
    """
    torch = _torch()
    dev, la, lb, fa, fb = _log_marginals(
        a, b, rho_a=rho_a, rho_b=rho_b, epsilon=epsilon, device=device
    )
    n, m = len(la), len(lb)
    r = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=dev)
    c = torch.as_tensor(np.asarray(cols, dtype=np.int64), device=dev)
    K = -torch.as_tensor(np.asarray(cost, dtype=np.float64), device=dev) / epsilon
    f = torch.zeros(n, dtype=torch.float64, device=dev)
    g = torch.zeros(m, dtype=torch.float64, device=dev)
    for _ in range(int(max_iter)):
        f_new = fa * epsilon * (la - _grouped_logsumexp(K + g[c] / epsilon, r, n))
        f_new = torch.nan_to_num(f_new, nan=-1e30, posinf=1e30, neginf=-1e30)
        g_new = fb * epsilon * (lb - _grouped_logsumexp(K + f_new[r] / epsilon, c, m))
        g_new = torch.nan_to_num(g_new, nan=-1e30, posinf=1e30, neginf=-1e30)
        change = max(float(torch.max(torch.abs(f_new - f))), float(torch.max(torch.abs(g_new - g))))
        f, g = f_new, g_new
        if change < tol * epsilon:
            break
    return torch.exp(K + (f[r] + g[c]) / epsilon).cpu().numpy()


def candidate_pairs(
    F_sc: np.ndarray,
    F_sp: np.ndarray,
    *,
    k: int,
    sides: str = "both",
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate cell-spot pairs by cosine similarity, with their cost ``1 - cos``.

    ``sides="spots"``: each spot's ``k`` most similar cells (enough when the cell marginal is
    relaxed). ``sides="both"``: also each cell's ``k`` most similar spots, so that every cell
    and every spot has at least ``min(k, n)`` pairs and balanced problems stay feasible (one
    pass over the similarities, in blocks of cells, merged into every spot's running best
    cells). Returns ``(cells, spots, cost)`` sorted by cell, then spot.
    """
    if sides not in ("both", "spots"):
        raise InputError(f"sides must be 'both' or 'spots', got {sides!r}")
    if sides == "spots":
        idx, sims = topk_similar(_unit(F_sp), _unit(F_sc), k=k, device=device, sort=False)
        spots = np.repeat(np.arange(len(F_sp)), idx.shape[1])
        cells = idx.ravel()
        order = np.lexsort((spots, cells))
        cost = 1.0 - np.clip(sims.ravel()[order].astype(np.float64), -1.0, 1.0)
        return cells[order], spots[order], cost
    torch = _torch()
    dev = torch.device(resolve_device(device))
    A = torch.as_tensor(_unit(F_sc), device=dev)
    B = torch.as_tensor(_unit(F_sp), device=dev)
    n, m = A.shape[0], B.shape[0]
    k_spots, k_cells = int(min(k, m)), int(min(k, n))
    best_val = torch.full((k_cells, m), -torch.inf, device=dev)
    best_idx = torch.zeros((k_cells, m), dtype=torch.long, device=dev)
    cells, spots, sims = [], [], []
    step = max(1, _BLOCK_ENTRIES // max(1, m))
    for start in range(0, n, step):
        S = A[start : start + step] @ B.T  # (b, m)
        val, idx = torch.topk(S, k_spots, dim=1, sorted=False)
        cells.append(torch.arange(start, start + S.shape[0], device=dev).repeat_interleave(k_spots))
        spots.append(idx.reshape(-1))
        sims.append(val.reshape(-1))
        if S.shape[0] == n:  # one block: the spots' best cells from the transposed product
            best_val, best_idx = torch.topk(B @ A.T, k_cells, dim=1, sorted=False)
            best_val, best_idx = best_val.T, best_idx.T
            break
        cval, cidx = torch.topk(S, min(k_cells, S.shape[0]), dim=0, sorted=False)
        merged_val = torch.cat([best_val, cval])
        merged_idx = torch.cat([best_idx, cidx + start])
        best_val, pos = torch.topk(merged_val, k_cells, dim=0, sorted=False)
        best_idx = torch.gather(merged_idx, 0, pos)
    cells.append(best_idx.reshape(-1))
    spots.append(torch.arange(m, device=dev).repeat(k_cells))
    sims.append(best_val.reshape(-1))
    cells_t, spots_t = torch.cat(cells), torch.cat(spots)
    if n * m <= 4 * _BLOCK_ENTRIES:  # small: deduplicate through a dense mask (sorted output)
        mask = torch.zeros((n, m), dtype=torch.bool, device=dev)
        mask[cells_t, spots_t] = True
        pair = mask.nonzero()
        cells_t, spots_t = pair[:, 0], pair[:, 1]
        cos = (A[cells_t] * B[spots_t]).sum(dim=1).clamp(-1.0, 1.0)
    else:
        key = cells_t.to(torch.int64) * m + spots_t
        key, first = _unique_first(key)
        cells_t, spots_t, cos = key // m, key % m, torch.cat(sims)[first]
    cost = (1.0 - cos).to(torch.float64)
    return cells_t.cpu().numpy(), spots_t.cpu().numpy(), cost.cpu().numpy()


def _unique_first(key: Any) -> tuple[Any, Any]:
    """Sorted unique values of ``key`` and the position of their first occurrence."""
    torch = _torch()
    order = torch.argsort(key, stable=True)
    sorted_key = key[order]
    first = torch.ones_like(sorted_key, dtype=torch.bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    return sorted_key[first], order[first]


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
        See :func:`sinkhorn`.

    Returns
    -------
    ``(n_cells, n_spots)`` CSR plan (entries below ``1e-12`` of the total mass dropped).
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
        return _sparse_plan(sinkhorn(_cosine_cost(F_sc, F_sp), a, b, **opts))
    sides = "both" if unbalanced is None else "spots"
    cells, spots, cost = candidate_pairs(
        F_sc, F_sp, k=int(n_candidates), sides=sides, device=device
    )
    values = sparse_sinkhorn(cells, spots, cost, a, b, **opts)
    return sparse.csr_matrix((values, (cells, spots)), shape=(n_cells, n_spots))
