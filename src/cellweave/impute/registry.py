"""The imputation methods behind ``tl.impute``: one registry, one calling convention.

Every method is a function ``fn(X1, *, coords, random_state, **params) -> P`` taking a spot x
gene count matrix (CSR float64) and the spot coordinates (``None`` when absent), and returning
expected expression proportions ``P`` (dense float64, rows sum to 1, strictly positive).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse

from ..errors import InputError, MissingKeyError
from ..validate import check_coordinates

__all__ = [
    "METHODS",
    "ImputeMethod",
    "check_counts",
    "get_method",
    "register",
    "require_coords",
    "to_proportions",
]

Kind = Literal["reference", "baseline", "model"]


@dataclass(frozen=True)
class ImputeMethod:
    """A registered imputation method.

    Attributes
    ----------
    name
        Name used by ``tl.impute(method=...)`` and the CLI.
    kind
        ``"reference"`` (raw, gene mean), ``"baseline"`` or ``"model"``.
    spatial
        Whether the method needs spot coordinates.
    fn
        ``fn(X1, *, coords, random_state, **params) -> P``.
    description
        One line for help texts and reports.
    """

    name: str
    kind: Kind
    spatial: bool
    fn: Callable[..., np.ndarray]
    description: str


METHODS: dict[str, ImputeMethod] = {}


def register(name: str, *, kind: Kind, spatial: bool, description: str):
    """Decorator adding a method function to :data:`METHODS`."""

    def decorate(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in METHODS:
            raise RuntimeError(f"imputation method {name!r} registered twice")
        METHODS[name] = ImputeMethod(name, kind, spatial, fn, description)
        return fn

    return decorate


def get_method(name: str) -> ImputeMethod:
    """The registered method called ``name`` (``InputError`` listing the choices otherwise)."""
    if name not in METHODS:
        raise InputError(
            f"unknown imputation method {name!r}; choose one of {', '.join(sorted(METHODS))}"
        )
    return METHODS[name]


def to_proportions(M: np.ndarray, *, floor: float = 1e-8) -> np.ndarray:
    """Rows of a non-negative matrix as strictly positive proportions (rows sum to 1).

    Entries are floored at ``floor`` times the row mean so that no proportion is zero;
    an all-zero row becomes uniform.
    """
    M = np.asarray(M, dtype=np.float64)
    M = np.where(np.isfinite(M), np.maximum(M, 0.0), 0.0)
    totals = M.sum(axis=1, keepdims=True)
    uniform = np.full_like(M, 1.0 / M.shape[1])
    P = np.divide(M, totals, out=uniform.copy(), where=totals > 0)
    P = np.maximum(P, floor / M.shape[1])
    return P / P.sum(axis=1, keepdims=True)


def check_counts(X1) -> sparse.csr_matrix:
    """``X1`` as CSR float64 with at least one spot and gene (every method's first step)."""
    X1 = sparse.csr_matrix(X1, dtype=np.float64)
    if X1.shape[0] == 0 or X1.shape[1] == 0:
        raise InputError(f"the count matrix has shape {X1.shape}; pass at least one spot and gene")
    return X1


def require_coords(coords, *, n_obs: int, method: str, fix: str) -> np.ndarray:
    """Finite ``(n_obs, d)`` coordinates of a spatial method, or a one-line error.

    ``fix`` completes the message when coordinates are missing (e.g. which non-spatial
    method to use instead, or how to switch a spatial loss off).
    """
    if coords is None:
        raise MissingKeyError(
            f"method {method!r} needs spot coordinates in obsm['spatial']; store them there "
            f"(or pass spatial_key=...) or {fix}"
        )
    coords = check_coordinates(coords, name="coordinates", allow_nonfinite=False)
    if coords.shape[0] != n_obs:
        raise InputError(f"{coords.shape[0]} coordinates for {n_obs} spots; pass one row per spot")
    return coords
