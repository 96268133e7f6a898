"""Fused Gromov-Wasserstein (FGW) transport between two metric-measure spaces with features.

Solves, for a feature cost ``M`` (n1 x n2) and intra-domain distance matrices ``C1`` (n1 x n1)
and ``C2`` (n2 x n2),

.. math::

    \\min_T \\; (1 - \\alpha) \\langle M, T \\rangle
        + \\alpha \\sum_{i,j,k,l} (C1_{ik} - C2_{jl})^2 T_{ij} T_{kl}
        \\; [- \\epsilon H(T)]

over plans ``T >= 0`` with row sums ``a`` and column sums ``b`` (balanced), or with row sums
``<= a``, column sums ``<= b`` and total ``mass`` (partial). The conventions (``alpha`` weighs
the structure term, square loss) are those of POT's ``ot.gromov.fused_gromov_wasserstein``
(Vayer et al. 2019), and the two solvers follow POT's algorithms:

- ``epsilon=None``: conditional gradient (Frank-Wolfe) with the exact line search of the
  quadratic objective; each linear step is an exact transport problem (POT's network simplex,
  on CPU), the partial one with a dummy point on each side (Chapel et al. 2020).
- ``epsilon > 0``: projected (mirror) gradient, each step a log-domain Sinkhorn projection of
  the linearized cost (:mod:`cellweave.ot.sinkhorn`'s loop, stopping on the marginal error as
  POT does), warm-started from the previous dual potentials (Peyré et al. 2016).

Compared with POT's own FGW solvers (``benchmarks/results/ot.md``), this one adds partial
transport to the entropic solver, several starts, and runs its tensor products on CUDA.

The tensor products (the ``O(n1^2 n2 + n1 n2^2)`` part) run in torch on CPU or CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._utils import RandomState, check_random_state
from ..device import check_device
from ..errors import InputError
from .exact import exact_transport
from .sinkhorn import _Dense, _iterate

__all__ = [
    "MAX_ENTRIES",
    "FGWLog",
    "check_fgw_size",
    "fused_gromov_wasserstein",
]

#: Largest number of entries of one dense matrix (the plan, ``C1`` or ``C2``) FGW will build:
#: 10^8 float64 entries are 0.8 GB each, and the solver holds a few of them at once.
MAX_ENTRIES = 100_000_000

_SINKHORN_MAX_ITER = 1000
_SINKHORN_TOL = 1e-9
_CHECK_EVERY = 10


@dataclass(frozen=True)
class FGWLog:
    """What the solver did: final objective, outer iterations and whether it converged."""

    objective: float
    n_iter: int
    converged: bool
    solver: str


def check_fgw_size(n1: int, n2: int, *, max_entries: int = MAX_ENTRIES) -> None:
    """Raise :class:`~cellweave.errors.InputError` when an FGW problem is too large to hold.

    Call this before building the ``n1 x n1`` and ``n2 x n2`` distance matrices.

    Parameters
    ----------
    n1, n2
        Number of points on each side.
    max_entries
        Largest dense matrix allowed (entries), :data:`MAX_ENTRIES` by default.
    """
    largest = max(n1 * n2, n1 * n1, n2 * n2)
    if largest > max_entries:
        gb = 8 * (3 * n1 * n2 + n1 * n1 + n2 * n2) / 1e9
        raise InputError(
            f"fused Gromov-Wasserstein between {n1} and {n2} points needs dense {n1}x{n2}, "
            f"{n1}x{n1} and {n2}x{n2} matrices (about {gb:.1f} GB, above the limit of "
            f"{max_entries:.3g} entries per matrix): subsample the cells/spots (e.g. to a few "
            "thousand), or use method='ot' (no intra-domain distances), or raise max_entries"
        )


def fused_gromov_wasserstein(
    M: Any,
    C1: Any,
    C2: Any,
    *,
    alpha: float = 0.5,
    epsilon: float | None = None,
    a: Any = None,
    b: Any = None,
    mass: float | None = None,
    max_iter: int = 1000,
    tol: float = 1e-9,
    G0: Any = None,
    n_init: int = 1,
    random_state: RandomState = 0,
    device: str = "auto",
    max_entries: int = MAX_ENTRIES,
    return_log: bool = False,
) -> np.ndarray | tuple[np.ndarray, FGWLog]:
    """Fused Gromov-Wasserstein plan between two spaces (square loss).

    Parameters
    ----------
    M
        ``(n1, n2)`` feature cost between the points of the two spaces; ``None`` for pure
        Gromov-Wasserstein (then ``alpha`` must be 1).
    C1, C2
        ``(n1, n1)`` and ``(n2, n2)`` intra-domain distance (or dissimilarity) matrices.
        Scale them (and ``M``) comparably, e.g. each divided by its maximum, so that ``alpha``
        means the same on every problem.
    alpha
        Weight of the structure (Gromov) term in [0, 1]; ``1 - alpha`` weighs ``M``.
    epsilon
        ``None``: exact FGW by conditional gradient. ``> 0``: entropic FGW (projected gradient
        with Sinkhorn projections); in the units of the costs.
    a, b
        Masses of the points (non-negative). Uniform (``1/n1``, ``1/n2``) when ``None``.
        Balanced problems need equal totals.
    mass
        Partial transport: move only this much mass (``0 < mass <= min(sum a, sum b)``), so
        that points without a counterpart can stay unmatched. ``None``: balanced.
    max_iter
        Outer iterations at most.
    tol
        Stopping tolerance: relative change of the objective (exact) or total-variation change
        of the plan (entropic).
    G0
        Initial plan (``(n1, n2)``, feasible); the product ``a b^T`` (scaled to ``mass``) when
        ``None``.
    n_init
        Number of starts: the first from ``G0``/the product plan, the others from random
        vertices of the transport polytope; the plan with the lowest objective is returned
        (FGW is not convex).
    random_state
        Seed of the random starts (used when ``n_init > 1``).
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or
        ``"mps"`` for the tensor products (:func:`cellweave.device.parse_device`).
    max_entries
        Refuse problems with a dense matrix larger than this (see :func:`check_fgw_size`).
    return_log
        Also return an :class:`FGWLog`.

    Returns
    -------
    The ``(n1, n2)`` plan as a float64 numpy array (and the log when ``return_log``).

    Raises
    ------
    InputError
        Shapes that disagree, non-finite costs, invalid masses/parameters, or a problem above
        ``max_entries``.
    """
    import torch

    problem = _Problem.build(M, C1, C2, a=a, b=b, alpha=alpha, mass=mass, max_entries=max_entries)
    if epsilon is not None and not (np.isfinite(epsilon) and epsilon > 0):
        raise InputError(f"epsilon must be None (exact) or a positive number, got {epsilon!r}")
    if int(n_init) < 1 or int(max_iter) < 1:
        raise InputError(f"n_init and max_iter must be >= 1, got {n_init} and {max_iter}")
    dev = torch.device(check_device(device, float64=True))
    rng = check_random_state(random_state)
    starts = [problem.initial_plan(G0)]
    for _ in range(int(n_init) - 1):
        starts.append(problem.random_vertex(rng))
    best: tuple[np.ndarray, FGWLog] | None = None
    tensors = problem.to_torch(dev)
    for start in starts:
        if epsilon is None:
            plan, log = _conditional_gradient(problem, tensors, start, max_iter=max_iter, tol=tol)
        else:
            plan, log = _projected_gradient(
                problem, tensors, start, epsilon=float(epsilon), max_iter=max_iter, tol=tol
            )
        if best is None or log.objective < best[1].objective:
            best = (plan, log)
    assert best is not None
    return best if return_log else best[0]


# --------------------------------------------------------------------------------------------
# the problem: validated inputs
# --------------------------------------------------------------------------------------------
@dataclass
class _Problem:
    M: np.ndarray
    C1: np.ndarray
    C2: np.ndarray
    a: np.ndarray
    b: np.ndarray
    alpha: float
    mass: float | None
    symmetric: bool

    @classmethod
    def build(cls, M, C1, C2, *, a, b, alpha, mass, max_entries) -> _Problem:
        C1 = _square(C1, "C1")
        C2 = _square(C2, "C2")
        n1, n2 = C1.shape[0], C2.shape[0]
        check_fgw_size(n1, n2, max_entries=max_entries)
        if not (0.0 <= float(alpha) <= 1.0):
            raise InputError(f"alpha must be in [0, 1] (weight of the structure), got {alpha!r}")
        if M is None:
            if float(alpha) != 1.0:
                raise InputError("M=None (no feature cost) needs alpha=1; pass M or alpha=1")
            M = np.zeros((n1, n2))
        M = _finite(M, "M")
        if M.shape != (n1, n2):
            raise InputError(
                f"M has shape {M.shape} but C1 and C2 give ({n1}, {n2}): M must be n1 x n2"
            )
        a = _marginal(a, n1, "a")
        b = _marginal(b, n2, "b")
        if mass is None:
            if not np.isclose(a.sum(), b.sum(), rtol=1e-6):
                raise InputError(
                    f"a sums to {a.sum():.6g} and b to {b.sum():.6g}: a balanced plan needs equal "
                    "totals; rescale them or pass mass=... for partial transport"
                )
        else:
            limit = min(a.sum(), b.sum())
            if not (0 < float(mass) <= limit * (1 + 1e-9)):
                raise InputError(
                    f"mass must be in (0, {limit:.6g}] (the smaller total of a and b), got {mass!r}"
                )
            mass = float(min(mass, limit))
        symmetric = bool(np.allclose(C1, C1.T) and np.allclose(C2, C2.T))
        return cls(M, C1, C2, a, b, float(alpha), mass, symmetric)

    @property
    def total(self) -> float:
        return float(self.a.sum()) if self.mass is None else self.mass

    def initial_plan(self, G0) -> np.ndarray:
        if G0 is None:
            return np.outer(self.a, self.b) * (self.total / (self.a.sum() * self.b.sum()))
        G0 = _finite(G0, "G0")
        if G0.shape != self.M.shape or (G0 < 0).any():
            raise InputError(f"G0 must be a non-negative {self.M.shape} plan, got {G0.shape}")
        return G0

    def random_vertex(self, rng: np.random.Generator) -> np.ndarray:
        """An extreme point of the feasible set: the exact plan of a random cost."""
        return _linear_step(self, rng.random(self.M.shape))

    def to_torch(self, device) -> dict[str, Any]:
        import torch

        def t(x):
            return torch.as_tensor(x, dtype=torch.float64, device=device)

        return {"M": t(self.M), "C1": t(self.C1), "C2": t(self.C2), "a": t(self.a), "b": t(self.b)}


def _square(C, name: str) -> np.ndarray:
    C = _finite(C, name)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] == 0:
        raise InputError(f"{name} must be a square (n, n) distance matrix, got shape {C.shape}")
    return C


def _finite(X, name: str) -> np.ndarray:
    if hasattr(X, "toarray"):
        X = X.toarray()
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    X = np.asarray(X, dtype=np.float64)
    if not np.isfinite(X).all():
        raise InputError(
            f"{name} holds NaN or infinite values: FGW needs finite costs; replace them "
            "(e.g. disconnected graph distances by the largest finite distance)"
        )
    return X


def _marginal(w, n: int, name: str) -> np.ndarray:
    if w is None:
        return np.full(n, 1.0 / n)
    w = _finite(w, name).ravel()
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise InputError(
            f"{name} must be {n} non-negative masses with a positive total, got shape {w.shape}"
        )
    return w


# --------------------------------------------------------------------------------------------
# the objective
# --------------------------------------------------------------------------------------------
def _tens(T, C1, C2, C1sq, C2sq):
    """``L(C1, C2) (x) T``: entry (i, j) is sum_kl (C1_ik - C2_jl)^2 T_kl."""
    r = T.sum(dim=1)
    c = T.sum(dim=0)
    return (C1sq @ r)[:, None] + (C2sq @ c)[None, :] - 2.0 * (C1 @ T @ C2.T)


class _Objective:
    """FGW objective, its gradient and the quadratic part along a direction (torch)."""

    def __init__(self, problem: _Problem, tensors: dict[str, Any]) -> None:
        self.alpha = problem.alpha
        self.symmetric = problem.symmetric
        self.M = tensors["M"]
        C1, C2 = tensors["C1"], tensors["C2"]
        self.args = (C1, C2, C1 * C1, C2 * C2)
        self.args_t = None if problem.symmetric else (C1.T, C2.T, (C1 * C1).T, (C2 * C2).T)

    def gw_grad(self, T):
        if self.symmetric:
            return 2.0 * _tens(T, *self.args)
        return _tens(T, *self.args) + _tens(T, *self.args_t)

    def quadratic(self, D) -> float:
        """``GW(D) = <L (x) D, D>``."""
        return float((_tens(D, *self.args) * D).sum())

    def value_and_grad(self, T):
        tens = _tens(T, *self.args)
        value = (1 - self.alpha) * float((self.M * T).sum()) + self.alpha * float((tens * T).sum())
        gw = 2.0 * tens if self.symmetric else tens + _tens(T, *self.args_t)
        return value, (1 - self.alpha) * self.M + self.alpha * gw


# --------------------------------------------------------------------------------------------
# exact: conditional gradient
# --------------------------------------------------------------------------------------------
def _linear_step(problem: _Problem, cost: np.ndarray) -> np.ndarray:
    return exact_transport(cost, problem.a, problem.b, mass=problem.mass)


def _conditional_gradient(problem, tensors, start, *, max_iter, tol):
    import torch

    objective = _Objective(problem, tensors)
    device = tensors["M"].device
    T = torch.as_tensor(start, dtype=torch.float64, device=device)
    value, grad = objective.value_and_grad(T)
    converged = False
    n_iter = 0
    for it in range(1, int(max_iter) + 1):
        n_iter = it
        S = torch.as_tensor(_linear_step(problem, grad.cpu().numpy()), device=device)
        D = S - T
        slope = float((grad * D).sum())
        curvature = problem.alpha * objective.quadratic(D)
        step = _line_search(curvature, slope)
        if step == 0.0:
            converged = True
            break
        T = T + step * D
        new_value, grad = objective.value_and_grad(T)
        change = abs(new_value - value)
        value = new_value
        if change <= tol * abs(value) or change <= tol:
            converged = True
            break
    return T.cpu().numpy(), FGWLog(float(value), n_iter, converged, "conditional_gradient")


def _line_search(curvature: float, slope: float) -> float:
    """argmin over [0, 1] of ``curvature * t^2 + slope * t``."""
    if curvature > 0:
        return float(np.clip(-slope / (2.0 * curvature), 0.0, 1.0))
    return 1.0 if curvature + slope < 0 else 0.0


# --------------------------------------------------------------------------------------------
# entropic: projected gradient with Sinkhorn projections
# --------------------------------------------------------------------------------------------
def _projected_gradient(problem, tensors, start, *, epsilon, max_iter, tol):
    import torch

    objective = _Objective(problem, tensors)
    T = torch.as_tensor(start, dtype=torch.float64, device=tensors["M"].device)
    a, b = tensors["a"], tensors["b"]
    if problem.mass is not None:
        a, b = _extend_marginals(a, b, problem.mass)
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    log_a = torch.log(a.clamp_min(1e-300))
    log_b = torch.log(b.clamp_min(1e-300))
    converged = False
    n_iter = 0
    for it in range(1, int(max_iter) + 1):
        n_iter = it
        cost = (1 - problem.alpha) * objective.M + problem.alpha * objective.gw_grad(T)
        if problem.mass is not None:
            cost = _extend_cost(cost, epsilon)
        P, f, g = _sinkhorn_projection(cost, a, log_a, log_b, epsilon, f, g)
        if problem.mass is not None:
            P = P[:-1, :-1]
        change = float((P - T).abs().sum())
        T = P
        if change <= tol:
            converged = True
            break
    value = (1 - problem.alpha) * float((objective.M * T).sum())
    value += problem.alpha * objective.quadratic(T)
    return T.cpu().numpy(), FGWLog(value, n_iter, converged, "entropic")


def _extend_marginals(a, b, mass: float):
    import torch

    a_ext = torch.cat([a, (b.sum() - mass).reshape(1)])
    b_ext = torch.cat([b, (a.sum() - mass).reshape(1)])
    return a_ext, b_ext


def _extend_cost(cost, epsilon: float):
    """Dummy row and column of zero cost; dummy-to-dummy made prohibitive."""
    import torch

    shifted = cost - cost.min()
    n1, n2 = cost.shape
    extended = torch.zeros((n1 + 1, n2 + 1), dtype=cost.dtype, device=cost.device)
    extended[:n1, :n2] = shifted
    extended[n1, n2] = 100.0 * (float(shifted.max()) + 1.0) + 100.0 * epsilon
    return extended


def _sinkhorn_projection(cost, a, log_a, log_b, epsilon, f, g):
    """Entropic transport plan ``exp((f_i + g_j - cost_ij) / eps)`` with marginals a, b.

    Log-domain Sinkhorn iterations from the dual potentials ``f, g`` (warm start); stops when
    the row sums are within ``1e-9`` (Euclidean norm) of ``a``, as POT's ``ot.sinkhorn``
    does, or after 1000 iterations.
    """
    kernel = _Dense(-cost / epsilon)
    f, g = _iterate(
        kernel,
        log_a,
        log_b,
        epsilon=epsilon,
        f=f,
        g=g,
        max_iter=_SINKHORN_MAX_ITER,
        tol=_SINKHORN_TOL,
        stop="marginal",
        a=a,
        check_every=_CHECK_EVERY,
    )
    return kernel.plan(f, g, epsilon), f, g
