"""Reference predictors and baselines for imputation, all registered in the method registry.

Every method maps training counts ``X1`` (CSR, spots x genes) and the spot coordinates to
expected proportions ``P`` (rows sum to 1, strictly positive); see
:mod:`cellweave.impute.registry` and :mod:`cellweave.impute.evaluate` for the protocol.

References (always reported): ``raw`` and ``gene_mean``. Baselines: ``knn`` (expression
space), ``spatial_knn``, ``rings``, ``diffusion`` (MAGIC-like), ``nmf`` (KL loss) and
``shrinkage`` (each spot shrunk towards the gene mean, the strength chosen from ``X1`` by an
inner molecular split; no neighbours, yet a strong yardstick on single-cell data).

Smoothers share one recipe: a non-negative weight matrix ``W`` (self included) averages the
spots' proportions (``average="proportions"``, spots without counts left out) or pools their
counts (``average="counts"``, i.e. proportions weighted by library size); the result, on the
scale of the spots' typical library size, is shrunk towards the pooled gene-mean profile by
``prior`` pseudo-molecules (a Dirichlet prior; ``prior=0`` turns it off):
``P_i = (M_i + prior * g) / (|M_i| + prior)``. Without it, a gene that none of a spot's
neighbours shows gets a proportion of ~0 and a huge deviance as soon as the held-out half
shows one molecule.

Defaults were measured with the protocol of :mod:`cellweave.impute.evaluate` (mean Poisson
deviance per entry over seeds 0-2; breast slices 1-4 averaged / MERFISH):

- ``prior=30`` for ``knn``, ``spatial_knn`` and ``rings`` (without it: 1.008 / 1.651,
  1.640 / 2.575 and 1.255 / 2.093; with it: 0.641 / 1.396, 0.765 / 1.894, 0.698 / 2.016);
  larger priors help the breast slices and hurt MERFISH;
- ``average="counts"``: pooling counts was as good as or slightly better than averaging
  proportions (rings, seed 0: 0.699 vs 0.722 and 2.015 vs 2.061);
- ``knn``: 15 neighbours (5, 10, 15, 30 tried: flat from 10 on once shrunk);
  ``spatial_knn``: 7 (the spot and 6 neighbours; 5-13 tried);
- ``diffusion``: ``n_neighbors=15``, ``ka=5``, ``t=2``, ``prior=5`` (seed 0, ``t=3``:
  0.584 / 1.478; ``t=1``: 0.848 / 1.365 without a prior; ``t=6``: 0.595 / 1.684);
- ``nmf``: rank 10, 100 iterations, ``prior=10`` (ranks 5 and 20, 50 and 200 iterations
  tried: rank 5 suits the breast slices, rank 20 MERFISH);
- ``similarity=None`` for the spatial smoothers (plain smoothing, as the issue's baselines).
  ``similarity="gaussian"`` takes rings from 0.698 / 2.016 to 0.692 / 1.622 (seeds 0-2) and,
  with ``similarity_scale=0.5``, to 0.829 / 1.113: on single cells it mostly keeps the cell
  itself, shrunk (compare ``shrinkage``: 0.586 / 1.173).

The methods are registered (with their options) in :mod:`cellweave.impute.registry`; this
package holds the functions: :mod:`.smoothing` (the shared recipe), :mod:`.reference`
(``raw``, ``gene_mean``, ``shrinkage``), :mod:`.neighbours` (``knn``, ``diffusion``,
``spatial_knn``, ``rings``) and :mod:`.factorization` (``nmf``).
"""

from .factorization import _kl, kl_nmf, nmf
from .neighbours import diffusion, knn, rings, spatial_knn
from .reference import _shrinkage_deviances, gene_mean, raw, shrinkage, shrinkage_prior
from .smoothing import RAW_PSEUDOCOUNT, pooled_profile, product_proportions, shrunk, smooth

__all__ = [
    "RAW_PSEUDOCOUNT",
    "diffusion",
    "gene_mean",
    "kl_nmf",
    "knn",
    "nmf",
    "pooled_profile",
    "product_proportions",
    "raw",
    "rings",
    "shrinkage",
    "shrinkage_prior",
    "shrunk",
    "smooth",
    "spatial_knn",
]

# scoring helpers the tests check against their slow definitions
_ = (_kl, _shrinkage_deviances)
