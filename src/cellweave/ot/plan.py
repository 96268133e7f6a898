"""Transport plans as sparse matrices, and what follows from one: marginals and the
barycentric projection.

A plan ``P`` (``n x m``, non-negative) says how much of the mass of row point ``i`` goes to
column point ``j``. The solvers return dense arrays (:func:`~cellweave.ot.sinkhorn`), values
on candidate pairs (:func:`~cellweave.ot.sparse_sinkhorn`) or sparse matrices;
:class:`TransportPlan` holds any of them as CSR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from ..errors import InputError

__all__ = ["TransportPlan", "sparse_plan"]

#: Entries of a dense plan below this fraction of its total mass are dropped.
DROP_BELOW = 1e-12


def sparse_plan(plan: Any, *, drop_below: float = DROP_BELOW) -> sparse.csr_matrix:
    """A dense plan as CSR, entries below ``drop_below`` of its total mass dropped.

    Parameters
    ----------
    plan
        ``(n, m)`` dense plan (numpy array or torch tensor).
    drop_below
        Relative threshold (of the plan's total mass).

    Returns
    -------
    ``(n, m)`` float64 CSR matrix.
    """
    if type(plan).__module__.startswith("torch"):
        plan = plan.detach().cpu().numpy()
    plan = np.array(plan, dtype=np.float64)
    plan[plan < drop_below * plan.sum()] = 0.0
    return sparse.csr_matrix(plan)


@dataclass(frozen=True)
class TransportPlan:
    """A transport plan between ``n`` row points and ``m`` column points (CSR).

    Build one with :meth:`from_dense` or :meth:`from_pairs`, or directly from a sparse
    matrix.
    """

    matrix: sparse.csr_matrix

    @classmethod
    def from_dense(cls, plan: Any, *, drop_below: float = DROP_BELOW) -> TransportPlan:
        """From a dense plan (see :func:`sparse_plan`)."""
        return cls(sparse_plan(plan, drop_below=drop_below))

    @classmethod
    def from_pairs(cls, rows: Any, cols: Any, values: Any, shape: tuple[int, int]) -> TransportPlan:
        """From the plan's values on the pairs ``(rows[e], cols[e])`` (e.g. the output of
        :func:`~cellweave.ot.sparse_sinkhorn` on :func:`~cellweave.ot.candidate_pairs`)."""
        host = [
            v.detach().cpu().numpy() if type(v).__module__.startswith("torch") else v
            for v in (rows, cols, values)
        ]
        return cls(sparse.csr_matrix((host[2], (host[0], host[1])), shape=shape))

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    @property
    def row_mass(self) -> np.ndarray:
        """Mass leaving each row point, ``P 1``."""
        return np.asarray(self.matrix.sum(1)).ravel()

    @property
    def col_mass(self) -> np.ndarray:
        """Mass reaching each column point, ``P^T 1``."""
        return np.asarray(self.matrix.sum(0)).ravel()

    def barycentric_projection(self, target: np.ndarray) -> np.ndarray:
        """Each row point replaced by the barycentre of the column points it is sent to,
        ``x_i = sum_j P_ij y_j / sum_j P_ij`` (NaN for rows without mass).

        Parameters
        ----------
        target
            ``(m, d)`` coordinates (or features) of the column points.

        Returns
        -------
        ``(n, d)`` float64.
        """
        target = np.asarray(target, dtype=np.float64)
        if target.ndim != 2 or target.shape[0] != self.shape[1]:
            raise InputError(
                f"target has shape {target.shape}; the plan needs {self.shape[1]} rows "
                "(one per column point)"
            )
        mass = self.row_mass
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.matrix @ target) / mass[:, None]
