"""Move some batches' cells onto the others in a latent space by optimal transport.

In a mosaic, cells measured only in a weak modality (e.g. sparse ATAC) are placed less
precisely than cells with a strong one (RNA). :func:`barycentric_projection` solves an
entropic optimal transport between the *source* cells and the *target* cells of an
embedding (squared Euclidean cost, uniform masses, both marginals exact) and replaces each
source cell by the barycentre of the target cells it is transported to, ``x_i <- sum_j
P_ij y_j / sum_j P_ij`` - the projection step of SCOT (Demetci et al. 2022) and moscot's
``push``. Target cells do not move. The balanced marginals spread the source cells over the
whole target distribution in proportion, so the projection cannot pile them onto a few target
cells; the entropy (``epsilon``, relative to the mean cost) sets how many target cells each
source cell averages over. :func:`transport_batches` applies it to ``obsm`` scanpy style.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

from ..device import check_device
from ..errors import EmptyDataError, InputError, MissingKeyError, NonFiniteError
from ..ot import (
    MAX_DENSE,
    TransportPlan,
    nearest_pairs,
    normalize_cost,
    sinkhorn,
    sparse_sinkhorn,
    sqeuclidean_cost,
)
from ..validate import check_obs_key

__all__ = ["barycentric_projection", "transport_batches"]


def barycentric_projection(
    source: np.ndarray,
    target: np.ndarray,
    *,
    epsilon: float = 0.01,
    n_candidates: int | None = 50,
    max_iter: int = 2000,
    device: str = "auto",
) -> np.ndarray:
    """Barycentres of the target cells each source cell is transported to.

    Parameters
    ----------
    source, target
        ``(n, d)`` and ``(m, d)`` embeddings (same columns).
    epsilon
        Entropic regularization relative to the mean squared distance between source and
        target cells (small: each source cell averages few target cells).
    n_candidates
        Restrict the plan to each cell's ``n_candidates`` nearest cells on the other side
        (Euclidean); ``None``: the dense plan (``n * m`` entries; slow beyond a few thousand
        cells a side, refused beyond :data:`~cellweave.ot.MAX_DENSE`). With a small
        ``epsilon`` the dense plan has almost no mass outside these pairs.
    max_iter, device
        Sinkhorn iterations at most; ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
        ``"gpu"`` or ``"mps"`` (see :func:`cellweave.device.parse_device`).

    Returns
    -------
    ``(n, d)`` float64: the projected source cells.
    """
    check_device(device, float64=True)  # Sinkhorn runs in float64
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise InputError(
            f"source {source.shape} and target {target.shape} must be 2-D with the same "
            "columns: pass two blocks of one embedding"
        )
    if len(source) == 0 or len(target) == 0:
        raise EmptyDataError("barycentric projection needs source and target cells")
    if not (np.isfinite(source).all() and np.isfinite(target).all()):
        raise NonFiniteError("the embedding has NaN or inf values: compute it again")
    if not epsilon > 0:
        raise InputError(f"epsilon={epsilon!r} must be > 0; pass e.g. epsilon=0.01")
    n, m = len(source), len(target)
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    if n_candidates is None and n * m > MAX_DENSE:
        raise InputError(f"a dense plan of {n} x {m} cells is too large: pass n_candidates=50")
    opts = dict(epsilon=epsilon, max_iter=max_iter, device=device)
    if n_candidates is None:
        cost = normalize_cost(sqeuclidean_cost(source, target), by="mean")
        plan = TransportPlan(sparse.csr_matrix(sinkhorn(cost, a, b, **opts)))
    else:
        rows, cols, cost = nearest_pairs(source, target, k=int(n_candidates))
        values = sparse_sinkhorn(rows, cols, normalize_cost(cost, by="mean"), a, b, **opts)
        plan = TransportPlan.from_pairs(rows, cols, values, (n, m))
    if not (plan.row_mass > 0).all():
        raise InputError(
            f"epsilon={epsilon} is too small for this embedding (some cells got no mass): "
            "pass a larger epsilon"
        )
    return plan.barycentric_projection(target)


def source_target_masks(
    batches: np.ndarray,
    source: str | Sequence[str],
    target: str | Sequence[str] | None = None,
    *,
    batch_key: str = "batch",
) -> tuple[list[str], list[str] | None, np.ndarray, np.ndarray]:
    """Check ``source`` / ``target`` batch names against ``batches`` (one per cell) and
    return ``(source list, target list or None, source mask, target mask)``; a one-line
    :class:`~cellweave.errors.InputError` names an unknown batch or an overlap (callers such
    as the CLI run it before a long training)."""
    known = sorted(set(batches))
    src = [source] if isinstance(source, str) else list(source)
    tgt = None if target is None else ([target] if isinstance(target, str) else list(target))
    if not src:
        raise InputError("no source batch given: name the batch(es) whose cells move")
    for name in src + (tgt or []):
        if name not in known:
            raise InputError(
                f"batch {name!r} is not in obs[{batch_key!r}] (batches: {', '.join(known)})"
            )
    is_src = np.isin(batches, src)
    is_tgt = ~is_src if tgt is None else np.isin(batches, tgt)
    if (is_src & is_tgt).any():
        raise InputError("a batch is both source and target: give disjoint batches")
    if not is_tgt.any():
        raise EmptyDataError("no target cells: leave some batches out of the source batches")
    return src, tgt, is_src, is_tgt


def transport_batches(
    data: Any,
    source: str | Sequence[str],
    *,
    batch_key: str = "batch",
    target: str | Sequence[str] | None = None,
    use_rep: str = "X_cellweave",
    key_added: str | None = None,
    epsilon: float = 0.01,
    device: str = "auto",
    copy: bool = False,
):
    """Move the cells of the ``source`` batches onto the ``target`` batches' cells in
    ``obsm[use_rep]`` by optimal transport (:func:`barycentric_projection`).

    Parameters
    ----------
    data
        AnnData or MuData with ``obsm[use_rep]`` and ``obs[batch_key]``.
    source
        Batch(es) whose cells move, e.g. the cells measured only in a weak modality.
    batch_key
        Column of ``obs`` with the batches.
    target
        Batch(es) the source cells move onto (default: every other batch). Their cells keep
        their coordinates.
    use_rep
        Embedding in ``obsm`` (e.g. :func:`~cellweave.tl.integrate`'s ``X_cellweave``).
    key_added
        Output key in ``obsm`` (default ``<use_rep>_ot``); ``use_rep`` itself is kept.
    epsilon, device
        See :func:`barycentric_projection`.
    copy
        Return a modified copy instead of writing into ``data``.

    Returns
    -------
    ``None`` (or the copy). Written: ``obsm[key_added]`` and ``uns["cellweave_transport"]``
    (``params``, ``n_moved``, ``mean_shift``: mean distance a source cell moved).
    """
    check_device(device, float64=True)
    if use_rep not in data.obsm:
        raise MissingKeyError(
            f"obsm has no {use_rep!r} (keys: {', '.join(data.obsm) or 'none'}): run "
            "cellweave.tl.integrate first or pass use_rep="
        )
    batches = check_obs_key(data, batch_key, name="data").astype(str).to_numpy()
    src, tgt, is_src, is_tgt = source_target_masks(batches, source, target, batch_key=batch_key)
    data = data.copy() if copy else data
    X = np.asarray(data.obsm[use_rep], dtype=np.float64)
    before = X[is_src]
    moved = barycentric_projection(before, X[is_tgt], epsilon=epsilon, device=device)
    out = X.copy()
    out[is_src] = moved
    key = key_added or f"{use_rep}_ot"
    data.obsm[key] = out.astype(np.float32)
    data.uns["cellweave_transport"] = {
        "params": {
            "source": src,
            "target": tgt if tgt is not None else sorted(set(batches[is_tgt])),
            "batch_key": batch_key,
            "use_rep": use_rep,
            "key_added": key,
            "epsilon": float(epsilon),
        },
        "n_moved": int(is_src.sum()),
        "mean_shift": float(np.linalg.norm(moved - before, axis=1).mean()),
    }
    return data if copy else None
