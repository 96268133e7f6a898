"""The non-rigid refinement: a smooth displacement field on top of the rigid transform.

:func:`fit_nonrigid` (the ``"nonrigid"`` solver) alternates local matching (from the current
warped positions) with a Gaussian-kernel ridge regression of the residual matches
(:class:`DisplacementField`), until no spot moves any more (non-rigid ICP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

from .plan import Masses, local_plan

__all__ = ["DisplacementField", "NonrigidOptions", "fit_nonrigid"]

_ROUNDS = 10  # non-rigid ICP rounds at most
_N_CENTRES = 600  # kernel centres of the displacement field at most


@dataclass(frozen=True)
class NonrigidOptions:
    """Options of the non-rigid step (see ``align_sections``).

    ``bandwidth`` is in spot spacings; ``smoothness`` is the ridge penalty relative to the data
    term.
    """

    bandwidth: float = 3.0
    smoothness: float = 0.1


@dataclass(frozen=True)
class DisplacementField:
    """Smooth displacement ``f(x) = sum_k K(x, z_k) beta_k`` with a Gaussian kernel."""

    centres: np.ndarray
    beta: np.ndarray
    bandwidth: float

    @classmethod
    def fit(cls, plan_ba, target, points, centres, *, spot_mass, bandwidth, smoothness):
        """Kernel ridge regression of ``barycentre(plan) - points`` over the matched points.

        ``smoothness`` scales the RKHS penalty relative to the mean diagonal of the data term.
        """
        mass = np.asarray(plan_ba.sum(axis=1)).ravel()
        weights = np.clip(mass / spot_mass, 0.0, 1.0)
        matched = weights > 0
        barycentres = np.asarray(plan_ba[matched] @ target) / mass[matched, None]
        residual = barycentres - points[matched]
        w = weights[matched]
        K = _gaussian(points[matched], centres, bandwidth)
        Kzz = _gaussian(centres, centres, bandwidth)
        lhs = K.T @ (w[:, None] * K)
        lam = float(smoothness) * np.trace(lhs) / len(centres)
        ridge = lhs + lam * Kzz + 1e-10 * np.eye(len(centres))
        beta = np.linalg.solve(ridge, K.T @ (w[:, None] * residual))
        return cls(centres, beta, float(bandwidth))

    def __call__(self, coords: np.ndarray) -> np.ndarray:
        return _gaussian(coords, self.centres, self.bandwidth) @ self.beta


def fit_nonrigid(
    rigid: np.ndarray,
    M: np.ndarray | None,
    pa: np.ndarray,
    masses: Masses,
    *,
    spacing: float,
    options: NonrigidOptions,
    rng: np.random.Generator,
) -> tuple[np.ndarray, DisplacementField]:
    """Non-rigid ICP from the rigidly moved spots ``rigid`` (of b) onto ``pa`` (of a).

    Alternates local matching (on the feature cost ``M`` and the distance, from the current
    warped positions) with a displacement field fitted on the rigid positions, until no spot
    moves by more than ``1e-3`` spacings. Returns the last plan (rows b) and the field.
    """
    n_centres = min(len(rigid), _N_CENTRES)
    centres = rigid[np.sort(rng.choice(len(rigid), n_centres, replace=False))]
    bandwidth = options.bandwidth * spacing
    moved, plan, field = rigid, None, None
    for _ in range(_ROUNDS):
        plan = local_plan(M, pa, moved, masses, spacing=spacing)
        field = DisplacementField.fit(
            plan,
            pa,
            rigid,
            centres,
            spot_mass=masses.b.max(),
            bandwidth=bandwidth,
            smoothness=options.smoothness,
        )
        new = rigid + field(rigid)
        shift = float(np.abs(new - moved).max())
        moved = new
        if shift < 1e-3 * spacing:
            break
    return plan, field


def _gaussian(x: np.ndarray, z: np.ndarray, bandwidth: float) -> np.ndarray:
    return np.exp(-cdist(x, z, "sqeuclidean") / (2.0 * bandwidth**2))
