"""The transport target of the attention mapper: entropic OT between a section's spots and
their candidate cells.

The attention of a spot over its candidate cells is a composition fitted to the spot's own
counts: nothing ties one spot's choice of cells to another's, so a few cells that fit many
spots' noise can take much of the mass. Entropic optimal transport on the same features
(the cosine cost on the principal axes of the panels, as ``method="ot"``) adds what the
attention lacks, a marginal over the cells: every cell carries about the same mass over
the whole section (relaxed by ``unbalanced``). :func:`transport_target` computes that plan
on the spots' candidate pairs. The model uses it twice, by default only without cell types
(gene prediction; :func:`resolve_transport`): it mixes it into its attention when it maps
(option ``transport``: the plan's share), and, where the entropy term is on (``entropy`` >
0: values that are not counts), its entropy term is relative to the plan (option
``entropy_reference="transport"``: ``entropy`` x KL(attention || plan) instead of the
maximum-entropy term), so training pulls the attention toward the plan rather than toward
uniform. Measured in ``benchmarks/results/mapping.md`` (genes notes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ot import pair_cost, sparse_sinkhorn
from .options import NO_TYPES_TRANSPORT, TRANSPORT_EPSILON
from .views import VIEWS

__all__ = [
    "TRANSPORT_UNBALANCED",
    "mix_transport",
    "plan_panel",
    "resolve_transport",
    "transport_target",
]

#: KL relaxation of the plan's marginals (``method="ot"``'s ``unbalanced``).
TRANSPORT_UNBALANCED = 0.1


def resolve_transport(options: dict[str, Any], n_types: int) -> dict[str, Any]:
    """``options`` with ``transport=None`` and ``entropy_reference=None`` resolved: without
    cell types (``n_types < 2``) :data:`~.options.NO_TYPES_TRANSPORT` and ``"transport"``,
    with cell types 0 and ``"uniform"`` (the attention alone)."""
    typed = n_types >= 2
    out = dict(options)
    if out.get("transport") is None:
        out["transport"] = 0.0 if typed else NO_TYPES_TRANSPORT
    if out.get("entropy_reference") is None:
        out["entropy_reference"] = "uniform" if typed else "transport"
    return out


def plan_panel(inputs: dict[str, np.ndarray], mask: np.ndarray, weight: float) -> np.ndarray:
    """The spots' features of the plan: their panel view, or with ``weight`` > 0 the panel
    mixed with the neighbour view, ``(1 - weight) * panel + weight * neighbours`` (both
    standardized the same way; spots without neighbours keep their panel), so the plan's
    cost sees a spot's spatial context (a noisy panel gains from it)."""
    panel = inputs["panel"]
    if not weight or "neighbours" not in inputs:
        return panel
    has = mask[:, VIEWS.index("neighbours")][:, None]
    mixed = (1.0 - float(weight)) * panel + float(weight) * inputs["neighbours"]
    return np.where(has, mixed, panel).astype(panel.dtype, copy=False)


def transport_target(
    spot_panel: np.ndarray,
    ref_panel: np.ndarray,
    axes: np.ndarray,
    cand: np.ndarray,
    *,
    epsilon: float = TRANSPORT_EPSILON,
    unbalanced: float | None = TRANSPORT_UNBALANCED,
) -> np.ndarray:
    """``(n_spots, k)`` entropic OT plan between spots and their candidate cells ``cand``
    (rows normalized to sum to 1, as an attention), computed on the CPU as the rest of the
    mapper's inference.

    Parameters
    ----------
    spot_panel, ref_panel
        Panel inputs of the spots and of the (used) reference cells.
    axes
        Principal axes the cosine cost ``1 - cos`` is computed on.
    cand
        ``(n_spots, k)`` candidate cells of every spot (rows of ``ref_panel``).
    epsilon, unbalanced
        Entropic regularization and KL relaxation of both marginals (``None``: exact
        marginals), uniform masses on the cells and the spots.
    """
    n_spots, k = cand.shape
    n_cells = ref_panel.shape[0]
    A = np.asarray(spot_panel @ axes, dtype=np.float64)
    B = np.asarray(ref_panel @ axes, dtype=np.float64)
    cells = cand.ravel().astype(np.int64)
    spots = np.repeat(np.arange(n_spots, dtype=np.int64), k)
    cost = pair_cost(A, B, spots, cells, metric="cosine")
    values = sparse_sinkhorn(
        cells,
        spots,
        cost,
        np.full(n_cells, 1.0 / n_cells),
        np.full(n_spots, 1.0 / n_spots),
        epsilon=float(epsilon),
        rho_a=unbalanced,
        rho_b=unbalanced,
        tol=1e-6,
        device="cpu",
    )
    plan = np.asarray(values, dtype=np.float64).reshape(n_spots, k)
    totals = plan.sum(1, keepdims=True)
    uniform = np.full_like(plan, 1.0 / k)
    return np.where(totals > 0, plan / np.where(totals > 0, totals, 1.0), uniform).astype(
        np.float32
    )


def mix_transport(attention: np.ndarray, target: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * attention + weight * target`` (both ``(n_spots, k)``, rows summing
    to 1): the attention with the transport plan's share ``weight``."""
    w = float(weight)
    if w <= 0:
        return attention
    return ((1.0 - w) * attention + w * target).astype(attention.dtype, copy=False)
