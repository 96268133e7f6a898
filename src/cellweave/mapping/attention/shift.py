"""The section's type abundance: a label-shift correction of the type weights.

With labelled pseudo-spots (:func:`.reference.pseudo_spots`) the type head learns under the
pseudo-spots' prior, every type equally likely, so where a spot's signal is weak its type
weights fall back toward uniform, whatever the section's real abundance (on MOp
pseudo-spots, a rare type is over- and an abundant one under-predicted in every spot). The
correction fits one offset per type ``b_t``, shared by every spot of the section, to the
spots' counts: ``pi'_st ∝ pi_st exp(b_t)`` maximizes the section's likelihood (the model's
own, with its type profiles and dispersions), the type weights of each spot being the
amortized ones. The fit is on the reference's scale, without the learned platform factor:
that factor was learned together with the prior-biased type weights and has absorbed their
misfit (on MOp pseudo-spots, where both sides come from one platform, its log has an sd
of 1.16 over genes), so with it the offsets come out near 0 and change nothing; without it
they correct the prior on both truth sets, the simulator's platform shift included
(benchmarks/results/mapping.md). It is the maximum-likelihood counterpart of the label-shift
EM of Saerens et al. (2002): the section's counts, not the classifier's posteriors, decide
the abundance, so it cannot feed on itself. ``T`` numbers from the whole section (or
:data:`MAX_SPOTS` of its spots) are well determined even when each spot alone is not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["MAX_SPOTS", "abundance_offset", "shift_attention"]

#: Most spots (drawn at random, seeded) the offsets are fitted on.
MAX_SPOTS = 2000


def abundance_offset(
    pi: np.ndarray,
    means: torch.Tensor,
    counts: np.ndarray,
    log_likelihood: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    seed: int = 0,
    max_iter: int = 100,
) -> np.ndarray:
    """``(T,)`` offsets ``b`` of the type log-weights that maximize the spots' likelihood.

    Parameters
    ----------
    pi
        ``(n_spots, T)`` type weights of the spots (rows sum to 1).
    means
        ``(T, n_genes)`` mean profile of every type (expected counts of one cell).
    counts
        ``(n_spots, n_genes)`` the spots' counts.
    log_likelihood
        ``(x, mu) -> (n_spots,)`` the model's per-spot log-likelihood.
    seed
        Draws the spots used when there are more than :data:`MAX_SPOTS`.
    max_iter
        L-BFGS iterations.
    """
    n = pi.shape[0]
    rows = np.arange(n)
    if n > MAX_SPOTS:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=MAX_SPOTS, replace=False))
    log_pi = torch.log(torch.as_tensor(pi[rows], dtype=torch.float32).clamp_min(1e-12))
    x = torch.as_tensor(counts[rows], dtype=torch.float32)
    library = x.sum(1, keepdim=True)
    means = means.detach().float()
    b = torch.zeros(pi.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        y = torch.softmax(log_pi + b, dim=1) @ means
        mu = library * y / y.sum(1, keepdim=True).clamp_min(1e-12)
        loss = -log_likelihood(x, mu).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    b = b.detach().numpy().astype(np.float64)
    return b - b.mean()


def shift_attention(
    a: np.ndarray, pi: np.ndarray, cand_types: np.ndarray, offset: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Attention ``a`` ``(n_spots, k)`` and type weights ``pi`` with the type weights
    moved by ``offset`` (``pi' ∝ pi exp(offset)``): each candidate's weight scaled as its
    type's (``cand_types``: ``(n_spots, k)`` type codes), so the attention within a type
    is unchanged and sums to the new type weight."""
    shifted = pi * np.exp(offset - offset.max())[None, :]
    shifted /= shifted.sum(axis=1, keepdims=True)
    ratio = shifted / np.maximum(pi, 1e-30)
    scaled = a * np.take_along_axis(ratio, cand_types, axis=1)
    return scaled, shifted
