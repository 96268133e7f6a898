"""How far a type's fractions can be trusted, from the reference alone.

A cell type whose cells cannot be told from the others by their counts carries no signal
into a spot's fractions either: the model's fractions for it are noise around their mean.
Its reliability is measured on the reference by leave-one-out recall (:func:`type_recall`):
each reference cell is assigned the type whose pooled composition (its own type's without
it) gives its counts the highest Poisson likelihood, and a type's recall is the share of its
cells assigned to it. The fractions of every type are then shrunk toward their mean over the
section by one minus that recall (:func:`shrink_fractions`), so a type that is recognised
keeps its fractions and one that is not is given its mean everywhere.

On MOp (1,677 genes) the recall of Endo and Peri is 0 (4 reference cells each; on all
10,309 cells of the data set 0 of 22 and 0 of 19), Mis 0.2 and MGC 0.33, every other type
0.8-1.0; on the simulator every type's is about 1, so its fractions are unchanged
(benchmarks/results/mapping.md).
"""

from __future__ import annotations

import numpy as np

from .reference import pooled_counts

__all__ = ["PSEUDO_COUNT", "shrink_fractions", "type_recall"]

#: Pseudo-count added to every gene of a type's pooled counts (genes a type has not shown).
PSEUDO_COUNT = 0.1


def type_recall(
    counts: np.ndarray, codes: np.ndarray, n_types: int, *, pooled: np.ndarray | None = None
) -> np.ndarray:
    """``(n_types,)`` leave-one-out recall of every type among the reference ``counts``
    (cells x genes) typed ``codes``: the share of its cells whose counts are most likely
    (Poisson, compositions from pooled counts plus :data:`PSEUDO_COUNT`) under their own
    type's pooled composition without them. A type without cells gets 1 (nothing to shrink).
    ``pooled``: the types' pooled counts when known (:attr:`.reference.Reference.pooled`)."""
    counts = np.asarray(counts, dtype=np.float64)
    if pooled is None:
        pooled = pooled_counts(counts, codes, n_types)
    P = pooled + PSEUDO_COUNT
    ll = counts @ np.log(P / P.sum(axis=1, keepdims=True)).T
    own = pooled[codes] - counts + PSEUDO_COUNT
    rows = np.arange(len(codes))
    ll[rows, codes] = (counts * np.log(own / own.sum(axis=1, keepdims=True))).sum(axis=1)
    hit = ll.argmax(axis=1) == codes
    n = np.bincount(codes, minlength=n_types)
    return np.where(n > 0, np.bincount(codes, weights=hit, minlength=n_types) / np.maximum(n, 1), 1)


def shrink_fractions(
    a: np.ndarray, pi: np.ndarray, cand_types: np.ndarray, recall: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Type weights ``pi`` ``(n_spots, T)`` moved ``1 - recall`` of the way to their mean
    over the spots (rows scaled to sum 1), and the attention ``a`` ``(n_spots, k)`` scaled
    alike (``cand_types``: the candidates' type codes), so the attention within a type is
    unchanged and sums to the new type weight."""
    w = 1.0 - np.clip(np.asarray(recall, dtype=np.float64), 0.0, 1.0)
    shrunk = (1.0 - w) * pi + w * pi.mean(axis=0, keepdims=True)
    shrunk /= np.maximum(shrunk.sum(axis=1, keepdims=True), 1e-30)
    ratio = shrunk / np.maximum(pi, 1e-30)
    return a * np.take_along_axis(ratio, cand_types, axis=1), shrunk
