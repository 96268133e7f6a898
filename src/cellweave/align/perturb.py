"""A section moved by a known transform: the ground truth an alignment is checked against."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._utils import RandomState, check_random_state
from ..errors import InputError
from ..validate import check_spatial

__all__ = ["perturb_section"]


def perturb_section(
    adata: AnnData,
    *,
    angle: float = 0.0,
    shift: Sequence[float] = (0.0, 0.0),
    drop: float = 0.0,
    thin: float = 1.0,
    mirror: bool = False,
    warp: float = 0.0,
    spatial_key: str = "spatial",
    random_state: RandomState = 0,
) -> tuple[AnnData, np.ndarray]:
    """A copy of a 2-D section moved by a known transform, to check an alignment against.

    In order: a fraction ``drop`` of the spots is removed, counts are binomially thinned
    (each molecule kept with probability ``thin``), the coordinates are mirrored (x flipped),
    warped by a smooth sine displacement of amplitude ``warp`` (one period over the section),
    rotated by ``angle`` degrees about their centroid and shifted by ``shift``.

    Returns
    -------
    ``(moved, truth)``: the moved copy and the original coordinates of its spots, i.e. where
    a perfect alignment onto ``adata`` puts them.
    """
    if not (0.0 <= drop < 1.0 and 0.0 < thin <= 1.0):
        raise InputError(f"drop must be in [0, 1) and thin in (0, 1], got {drop} and {thin}")
    rng = check_random_state(random_state)
    coords = check_spatial(adata, spatial_key=spatial_key, ndim=2)
    keep = np.sort(rng.choice(adata.n_obs, max(1, round(adata.n_obs * (1 - drop))), replace=False))
    moved = adata[keep].copy()
    if thin < 1.0:
        X = moved.X
        if sp.issparse(X):
            X = X.tocsr(copy=True)
            X.data = rng.binomial(np.rint(X.data).astype(np.int64), thin).astype(X.dtype)
            X.eliminate_zeros()
        else:
            X = rng.binomial(np.rint(np.asarray(X)).astype(np.int64), thin).astype(np.float32)
        moved.X = X
    truth = coords[keep]
    centre = truth.mean(axis=0)
    xy = truth - centre
    if mirror:
        xy[:, 0] = -xy[:, 0]
    if warp:
        extent = max(float(np.ptp(xy, axis=0).max()), 1e-12)
        xy = (
            xy
            + warp
            * np.c_[np.sin(2 * np.pi * xy[:, 1] / extent), np.sin(2 * np.pi * xy[:, 0] / extent)]
        )
    theta = np.deg2rad(angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved.obsm[spatial_key] = xy @ rot.T + centre + np.asarray(shift, dtype=float)
    return moved, truth
