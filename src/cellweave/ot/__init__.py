"""Optimal transport for cellweave: costs, candidate pairs, Sinkhorn, FGW, exact OT, plans.

The core transport numerics every capability uses (``mapping`` maps cells onto spots,
``align`` matches sections, ``mosaic`` moves batches in a latent space); none of them
imports another's solver.

- costs (:mod:`~cellweave.ot.costs`): :func:`unit_rows`, :func:`cosine_cost`,
  :func:`sqeuclidean_cost`, :func:`pair_cost`, :func:`normalize_cost`.
- candidate pairs (:mod:`~cellweave.ot.candidates`): :func:`topk_similar`,
  :func:`candidate_pairs` (cosine), :func:`nearest_pairs` (Euclidean), :data:`MAX_DENSE`.
- entropic OT (:mod:`~cellweave.ot.sinkhorn`): :func:`sinkhorn` (dense) and
  :func:`sparse_sinkhorn` (on candidate pairs), one log-domain loop for balanced,
  semi-relaxed and unbalanced problems, torch on CPU or CUDA, numpy or torch inputs;
  balanced dense problems with a moderate cost spread go to POT's ``ot.sinkhorn``.
- fused Gromov-Wasserstein (:mod:`~cellweave.ot.fgw`): :func:`fused_gromov_wasserstein`
  (exact or entropic, balanced or partial), :func:`check_fgw_size`.
- exact OT (:mod:`~cellweave.ot.exact`): :func:`exact_transport` (POT's network simplex,
  balanced or partial).
- plans (:mod:`~cellweave.ot.plan`): :class:`TransportPlan` (sparse; marginals,
  :meth:`~TransportPlan.barycentric_projection`), :func:`sparse_plan`.

POT is imported as ``ot`` inside this package's modules (absolute imports); this package is
``cellweave.ot``.
"""

from __future__ import annotations

from .candidates import MAX_DENSE, candidate_pairs, nearest_pairs, topk_similar
from .costs import cosine_cost, normalize_cost, pair_cost, sqeuclidean_cost, unit_rows
from .exact import exact_transport
from .fgw import MAX_ENTRIES, FGWLog, check_fgw_size, fused_gromov_wasserstein
from .plan import TransportPlan, sparse_plan
from .sinkhorn import POT_MAX_RANGE, SOLVERS, check_marginals, sinkhorn, sparse_sinkhorn

__all__ = [
    "MAX_DENSE",
    "MAX_ENTRIES",
    "POT_MAX_RANGE",
    "SOLVERS",
    "FGWLog",
    "TransportPlan",
    "candidate_pairs",
    "check_fgw_size",
    "check_marginals",
    "cosine_cost",
    "exact_transport",
    "fused_gromov_wasserstein",
    "nearest_pairs",
    "normalize_cost",
    "pair_cost",
    "sinkhorn",
    "sparse_plan",
    "sparse_sinkhorn",
    "sqeuclidean_cost",
    "topk_similar",
    "unit_rows",
]
