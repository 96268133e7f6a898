"""Entropic optimal transport by Sinkhorn iterations: dense or on candidate pairs, balanced,
semi-relaxed or unbalanced.

One log-domain loop (:func:`_iterate`) serves every case: a dense cost (:func:`sinkhorn`) or
a cost on candidate pairs (:func:`sparse_sinkhorn`, for problems beyond
:data:`~cellweave.ot.MAX_DENSE` entries, which POT does not offer), exact or KL-relaxed
marginals (Chizat et al. 2018), warm starts from dual potentials (used by
:func:`~cellweave.ot.fused_gromov_wasserstein`). It runs in torch on CPU or CUDA and accepts
numpy arrays or torch tensors. The objective is

``<C, P> + epsilon * sum P (log P - 1) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)``

(POT's ``reg_type="entropy"``), where ``rho=None`` makes that marginal a hard constraint and
``rho=0`` leaves it free; with both marginals hard it is POT's ``ot.sinkhorn``.

``solver="pot"`` hands a dense problem to POT's scaling iterations instead
(``ot.sinkhorn`` / ``ot.unbalanced.sinkhorn_unbalanced``, numpy or torch backend): 10-25x
faster on dense problems (matrix-vector products instead of log-sum-exps; measured in
``benchmarks/results/ot.md``) but limited to costs whose ``exp(-C / epsilon)`` does not
underflow. ``solver="auto"`` (the default) uses it for balanced dense problems whose cost
spread is at most :data:`POT_MAX_RANGE` epsilons (stopping when the column sums are within
``tol`` of ``b`` relative to its norm), and the log-domain loop otherwise (relaxed marginals,
whose POT stopping rule is absolute in the scalings; small epsilon; warm starts) or when
POT meets numerical errors. POT's own ``sinkhorn_log`` is the same algorithm as the loop
here and measured no faster (0.5-1.2x on torch tensors, about 3x on numpy), so it is not
used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..device import check_device
from ..errors import InputError

__all__ = ["POT_MAX_RANGE", "SOLVERS", "check_marginals", "sinkhorn", "sparse_sinkhorn"]

#: Dense solvers of :func:`sinkhorn`.
SOLVERS = ("auto", "log", "pot")
#: ``solver="auto"`` uses POT's scaling iterations up to this ``(max C - min C) / epsilon``
#: (``exp(-200)`` is far from float64's underflow, so the scalings stay finite).
POT_MAX_RANGE = 200.0
#: Stopping rules of the log-domain loop.
_STOPS = ("potentials", "marginal")
_HUGE = 1e30


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _device(device: str, *arrays: Any) -> Any:
    """The torch device: the tensors' own when ``device="auto"`` and one is a tensor."""
    import torch

    if device == "auto":
        for x in arrays:
            if _is_tensor(x):
                return x.device
    return torch.device(check_device(device, float64=True))


def _tensor(x: Any, dev: Any) -> Any:
    """``x`` as a float64 tensor on ``dev``."""
    import torch

    if _is_tensor(x):
        return x.to(device=dev, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), device=dev)


def _index(x: Any, dev: Any) -> Any:
    """``x`` as an int64 tensor on ``dev``."""
    import torch

    if _is_tensor(x):
        return x.to(device=dev, dtype=torch.int64)
    return torch.as_tensor(np.asarray(x, dtype=np.int64), device=dev)


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if _is_tensor(x) else np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------- checks


def _fraction(rho: float | None, epsilon: float) -> float:
    """Exponent of the scaling update: 1 (balanced, ``rho=None``), ``rho / (rho + eps)``."""
    if rho is None:
        return 1.0
    if rho < 0:
        raise InputError(f"unbalanced marginal weight {rho} must be >= 0 (or None: balanced)")
    return float(rho) / (float(rho) + epsilon)


def check_marginals(a: np.ndarray, b: np.ndarray, *, balanced: bool) -> None:
    """Raise :class:`~cellweave.errors.InputError` unless ``a`` and ``b`` are finite,
    non-negative masses with positive totals (equal totals when ``balanced``)."""
    if (a < 0).any() or (b < 0).any() or not np.isfinite(a).all() or not np.isfinite(b).all():
        raise InputError("marginals a and b must be finite and non-negative")
    if a.sum() <= 0 or b.sum() <= 0:
        raise InputError("marginals a and b must have positive totals")
    if balanced and not np.isclose(a.sum(), b.sum(), rtol=1e-6):
        raise InputError(
            f"balanced OT needs equal totals (a sums to {a.sum():.6g}, b to {b.sum():.6g}): "
            "rescale one of them, or pass unbalanced=... to relax the marginals"
        )


def _check(a, b, *, epsilon, rho_a, rho_b, stop) -> tuple[np.ndarray, np.ndarray]:
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise InputError(f"epsilon={epsilon!r} must be > 0; pass e.g. epsilon=0.05")
    if stop not in _STOPS:
        raise InputError(f"stop must be one of {', '.join(_STOPS)}, got {stop!r}")
    a_np, b_np = _numpy(a), _numpy(b)
    check_marginals(a_np, b_np, balanced=rho_a is None and rho_b is None)
    return a_np, b_np


# ----------------------------------------------------------------------------- the loop


@dataclass
class _Dense:
    """``K = -C / epsilon`` on all pairs."""

    K: Any

    def row_lse(self, g: Any, epsilon: float) -> Any:
        import torch

        return torch.logsumexp(self.K + g[None, :] / epsilon, dim=1)

    def col_lse(self, f: Any, epsilon: float) -> Any:
        import torch

        return torch.logsumexp(self.K + f[:, None] / epsilon, dim=0)

    def plan(self, f: Any, g: Any, epsilon: float) -> Any:
        import torch

        return torch.exp(self.K + (f[:, None] + g[None, :]) / epsilon)

    def row_sums(self, P: Any) -> Any:
        return P.sum(dim=1)


@dataclass
class _Pairs:
    """``K = -cost / epsilon`` on the pairs ``(rows[e], cols[e])``."""

    K: Any
    rows: Any
    cols: Any
    n: int
    m: int

    def row_lse(self, g: Any, epsilon: float) -> Any:
        return _grouped_logsumexp(self.K + g[self.cols] / epsilon, self.rows, self.n)

    def col_lse(self, f: Any, epsilon: float) -> Any:
        return _grouped_logsumexp(self.K + f[self.rows] / epsilon, self.cols, self.m)

    def plan(self, f: Any, g: Any, epsilon: float) -> Any:
        import torch

        return torch.exp(self.K + (f[self.rows] + g[self.cols]) / epsilon)

    def row_sums(self, P: Any) -> Any:
        return P.new_zeros(self.n).index_add_(0, self.rows, P)


def _grouped_logsumexp(values: Any, groups: Any, n: int) -> Any:
    """``log(sum(exp(values)))`` per group ``0..n-1`` (``-inf`` for empty groups)."""
    import torch

    top = torch.full((n,), -torch.inf, dtype=values.dtype, device=values.device)
    top = top.scatter_reduce(0, groups, values, reduce="amax", include_self=True)
    safe = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = torch.zeros_like(top).index_add_(0, groups, torch.exp(values - safe[groups]))
    return torch.log(total) + safe


def _iterate(
    kernel: _Dense | _Pairs,
    log_a: Any,
    log_b: Any,
    *,
    epsilon: float,
    fa: float = 1.0,
    fb: float = 1.0,
    f: Any = None,
    g: Any = None,
    max_iter: int = 2000,
    tol: float = 1e-7,
    stop: str = "potentials",
    a: Any = None,
    check_every: int = 10,
) -> tuple[Any, Any]:
    """Log-domain Sinkhorn updates of the dual potentials ``(f, g)`` (zeros when ``None``).

    ``f <- fa * eps * (log a - LSE_j(K + g / eps))``, then the same for ``g``; non-finite
    potentials (rows or columns without mass or pairs) are clamped to ``+-1e30``.
    ``stop="potentials"``: stop when neither potential moved by ``tol * epsilon`` (checked
    every iteration). ``stop="marginal"``: stop when the row sums are within ``tol``
    (Euclidean norm) of ``a``, checked every ``check_every`` iterations (POT's criterion).
    """
    import torch

    f = torch.zeros_like(log_a) if f is None else f
    g = torch.zeros_like(log_b) if g is None else g
    last = int(max_iter) - 1
    for it in range(int(max_iter)):
        f_new = fa * epsilon * (log_a - kernel.row_lse(g, epsilon))
        f_new = torch.nan_to_num(f_new, nan=-_HUGE, posinf=_HUGE, neginf=-_HUGE)
        g_new = fb * epsilon * (log_b - kernel.col_lse(f_new, epsilon))
        g_new = torch.nan_to_num(g_new, nan=-_HUGE, posinf=_HUGE, neginf=-_HUGE)
        if stop == "potentials":
            change = max(float((f_new - f).abs().max()), float((g_new - g).abs().max()))
            f, g = f_new, g_new
            if change < tol * epsilon:
                break
            continue
        f, g = f_new, g_new
        if it % check_every == 0 or it == last:
            P = kernel.plan(f, g, epsilon)
            if float(torch.linalg.vector_norm(kernel.row_sums(P) - a)) < tol:
                break
    return f, g


# ----------------------------------------------------------------------------- public


def sinkhorn(
    C: Any,
    a: Any,
    b: Any,
    *,
    epsilon: float = 0.05,
    rho_a: float | None = None,
    rho_b: float | None = None,
    max_iter: int = 2000,
    tol: float = 1e-7,
    stop: str = "potentials",
    init: tuple[Any, Any] | None = None,
    solver: str = "auto",
    device: str = "auto",
    return_potentials: bool = False,
) -> Any:
    """Entropic OT plan for a dense cost (balanced, semi-relaxed or unbalanced).

    Parameters
    ----------
    C
        ``(n, m)`` cost (numpy array or torch tensor).
    a, b
        Row and column masses (equal totals when both marginals are hard).
    epsilon
        Entropic regularization, in the units of ``C``.
    rho_a, rho_b
        KL weights of the relaxed marginals (``None``: exact marginal, ``0``: free).
    max_iter, tol, stop
        Iterations at most, and when to stop: ``"potentials"`` when the dual potentials
        change less than ``tol * epsilon``; ``"marginal"`` when the row sums are within
        ``tol`` of ``a`` (checked every 10 iterations, as POT does).
    init
        Dual potentials ``(f, g)`` to start from (a warm start; e.g. the previous
        ``return_potentials=True`` result of a nearby problem).
    solver
        ``"log"``: log-domain iterations (any ``epsilon``, warm starts, CPU or CUDA).
        ``"pot"``: POT's scaling iterations (``ot.sinkhorn``, ``ot.unbalanced.
        sinkhorn_unbalanced``; faster, for ``C / epsilon`` below a few hundred; POT's own
        stopping rules on ``tol``; no ``init``). ``"auto"``: ``"pot"`` for balanced problems
        with ``(max C - min C) / epsilon <= POT_MAX_RANGE`` and no warm start, else
        ``"log"`` (see the module docstring).
    device
        ``"auto"`` (a tensor's own device, else CUDA when present), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"``, ``"gpu"`` or ``"mps"`` (:func:`cellweave.device.parse_device`).
    return_potentials
        Also return the dual potentials ``(f, g)`` (``"log"`` solver).

    Returns
    -------
    ``(n, m)`` float64 plan: a torch tensor when ``C`` is one, else a numpy array (and
    ``(f, g)`` when ``return_potentials``).
    """
    if solver not in SOLVERS:
        raise InputError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    a_np, b_np = _check(a, b, epsilon=epsilon, rho_a=rho_a, rho_b=rho_b, stop=stop)
    if solver == "pot" and (init is not None or return_potentials):
        raise InputError("solver='pot' has no warm start or potentials: use solver='log'")
    dev = _device(device, C, a, b)
    if solver == "pot" or (
        solver == "auto"
        and _pot_suits(C, epsilon, balanced=rho_a is None and rho_b is None)
        and init is None
        and not return_potentials
        and stop == "potentials"
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = _pot_scaling(C, a, b, epsilon, rho_a, rho_b, dev, max_iter=max_iter, tol=tol)
        trouble = any("umerical error" in str(w.message) for w in caught)
        if solver == "pot" or (not trouble and bool(np.isfinite(_numpy(plan)).all())):
            return plan
    kernel = _Dense(-_tensor(C, dev) / epsilon)
    f, g = (None, None) if init is None else (_tensor(init[0], dev), _tensor(init[1], dev))
    plan, (f, g) = _log_domain(
        kernel, C, a_np, b_np, dev, epsilon=epsilon, rho_a=rho_a, rho_b=rho_b,
        f=f, g=g, max_iter=max_iter, tol=tol, stop=stop,
    )  # fmt: skip
    return (plan, (f, g)) if return_potentials else plan


def _log_domain(kernel, like, a_np, b_np, dev, *, epsilon, rho_a, rho_b, **loop) -> Any:
    """:func:`_iterate` on ``kernel`` from the masses ``a_np, b_np`` (``loop``: its other
    keywords); returns the plan (a torch tensor when ``like`` is one, else numpy) and the
    dual potentials ``(f, g)``."""
    import torch

    a_t = torch.as_tensor(a_np, device=dev)
    f, g = _iterate(
        kernel,
        torch.log(a_t),
        torch.log(torch.as_tensor(b_np, device=dev)),
        epsilon=epsilon,
        fa=_fraction(rho_a, epsilon),
        fb=_fraction(rho_b, epsilon),
        a=a_t,
        **loop,
    )
    plan = kernel.plan(f, g, epsilon)
    return (plan if _is_tensor(like) else plan.cpu().numpy()), (f, g)


def _pot_suits(C: Any, epsilon: float, *, balanced: bool) -> bool:
    """Whether ``solver="auto"`` hands this dense problem to POT's scaling iterations."""
    if not balanced:
        return False
    C = C if _is_tensor(C) else np.asarray(C, dtype=np.float64)
    spread = float(C.max() - C.min())
    return bool(np.isfinite(spread)) and spread / epsilon <= POT_MAX_RANGE


def _pot_scaling(C, a, b, epsilon, rho_a, rho_b, dev, *, max_iter, tol) -> Any:
    """POT's scaling Sinkhorn (balanced: ``ot.sinkhorn`` on the cost shifted to minimum 0,
    which leaves the plan unchanged; else ``sinkhorn_unbalanced``), torch tensors on ``dev``
    unless everything is numpy on the CPU; the plan in ``C``'s type."""
    import ot

    as_tensor = _is_tensor(C) or dev.type != "cpu"
    if as_tensor:
        Cx, ax, bx = _tensor(C, dev), _tensor(a, dev), _tensor(b, dev)
    else:
        Cx, ax, bx = (np.asarray(x, dtype=np.float64) for x in (C, a, b))
    if rho_a is None and rho_b is None:
        stop = float(tol) * float((bx**2).sum() ** 0.5)
        plan = ot.sinkhorn(
            ax, bx, Cx - Cx.min(), epsilon, numItermax=int(max_iter), stopThr=stop, warn=False
        )
    else:
        reg_m = tuple(np.inf if rho is None else float(rho) for rho in (rho_a, rho_b))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="If reg_type = entropy")
            plan = ot.unbalanced.sinkhorn_unbalanced(
                ax, bx, Cx, epsilon, reg_m, reg_type="entropy", numItermax=int(max_iter),
                stopThr=tol,
            )  # fmt: skip
    if _is_tensor(C) or not as_tensor:
        return plan
    return plan.cpu().numpy()


def sparse_sinkhorn(
    rows: Any,
    cols: Any,
    cost: Any,
    a: Any,
    b: Any,
    *,
    epsilon: float = 0.05,
    rho_a: float | None = None,
    rho_b: float | None = None,
    max_iter: int = 2000,
    tol: float = 1e-7,
    device: str = "auto",
) -> Any:
    """Log-domain Sinkhorn restricted to the pairs ``(rows[e], cols[e])`` (others: no mass).

    Same objective and parameters as :func:`sinkhorn`; every row and column must have at
    least one pair when its marginal is exact (:func:`~cellweave.ot.candidate_pairs` with
    ``sides="both"`` ensures it). Memory is ``O(pairs)``.

    Returns
    -------
    The plan's value on every pair (a torch tensor when ``cost`` is one, else numpy).
    """
    a_np, b_np = _check(a, b, epsilon=epsilon, rho_a=rho_a, rho_b=rho_b, stop="potentials")
    dev = _device(device, cost, a, b)
    n, m = len(a_np), len(b_np)
    kernel = _Pairs(
        -_tensor(cost, dev) / epsilon,
        _index(rows, dev),
        _index(cols, dev),
        n,
        m,
    )
    values, _ = _log_domain(
        kernel, cost, a_np, b_np, dev, epsilon=epsilon, rho_a=rho_a, rho_b=rho_b,
        max_iter=max_iter, tol=tol,
    )  # fmt: skip
    return values
