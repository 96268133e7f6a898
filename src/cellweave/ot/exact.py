"""Exact (unregularized) optimal transport: POT's network simplex (``ot.emd``), balanced or
partial (a given mass moved, the rest left unmatched).

Network simplex runs on CPU in POT's C++; torch tensors are accepted and the plan comes back
as a tensor on their device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["exact_transport"]

_EMD_MAX_ITER = 10_000_000


def exact_transport(cost: Any, a: Any, b: Any, *, mass: float | None = None) -> Any:
    """Exact (partial) transport plan minimizing ``<cost, T>`` (POT's network simplex).

    Parameters
    ----------
    cost
        ``(n1, n2)`` cost (numpy array or torch tensor).
    a, b
        Row and column masses.
    mass
        ``None``: balanced (``a`` and ``b`` with equal totals). Otherwise move ``mass`` with
        row sums ``<= a`` and column sums ``<= b``: a balanced problem with a dummy point on
        each side that absorbs the unmatched mass, dummy-to-dummy transport forbidden (Chapel
        et al. 2020).

    Returns
    -------
    ``(n1, n2)`` float64 plan, a tensor on ``cost``'s device when ``cost`` is one.
    """
    import ot

    if type(cost).__module__.startswith("torch"):
        import torch

        plan = exact_transport(cost.detach().cpu().numpy(), _host(a), _host(b), mass=mass)
        return torch.as_tensor(plan, device=cost.device)
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    a, b = _host(a), _host(b)
    if mass is None:
        return ot.emd(a, b, cost, numItermax=_EMD_MAX_ITER)
    n1, n2 = cost.shape
    shifted = cost - cost.min()
    extended = np.zeros((n1 + 1, n2 + 1))
    extended[:n1, :n2] = shifted
    extended[n1, n2] = 100.0 * (shifted.max() + 1.0)
    a_ext = np.append(a, b.sum() - mass)
    b_ext = np.append(b, a.sum() - mass)
    return ot.emd(a_ext, b_ext, extended, numItermax=_EMD_MAX_ITER)[:n1, :n2]


def _host(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
