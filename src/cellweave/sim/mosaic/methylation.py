"""DNA methylation in the mosaic simulator: methylated and total reads per region.

Region ``r`` has a loading ``M_r`` on the latent: for a fraction ``methylation_link_fraction``
of regions (promoter-like, linked to a gene ``g`` in ``var["gene"]``) ``M_r = -W_g + noise``
(methylation silences its gene), otherwise a random one. In batch ``b`` a cell's methylation
rate of region ``r`` is ``p = sigmoid(baseline_r + z M_r + shift[b, r])``; its coverage is
``n ~ Poisson(depth * coverage_mean_r)`` and its methylated reads ``m ~ BetaBinomial(n, p,
concentration)`` (rate ``q ~ Beta(p c, (1 - p) c)``, then ``Binomial(n, q)``). ``X`` holds
``m``, ``layers["total"]`` holds ``n`` and ``layers["true_expression"]`` the rate ``p``.

Everything is drawn from a stream of its own, so adding methylation to a simulation leaves the
RNA, ATAC and protein values of the same seed unchanged.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from .batches import _Config
from .cells import _Cells
from .genome import _Features
from .modalities import _cell_factor, _ModalityModel, _sigmoid_

__all__ = ["build_methylation"]

_RATE_EPS = 1e-4


def _draw_methylation(model, z, factor, shift, rng, *, concentration: float):
    """Methylated reads, the true rate, and the coverage as the ``"total"`` layer."""
    rate = z @ model.loadings
    rate += model.baseline + shift
    _sigmoid_(rate)
    coverage_mean = model.var["coverage_mean"].to_numpy(np.float32)
    total = rng.poisson(factor[:, None] * coverage_mean).astype(np.float32)
    p = np.clip(rate, _RATE_EPS, 1 - _RATE_EPS)
    q = rng.beta(p * concentration, (1 - p) * concentration)
    methylated = rng.binomial(total.astype(np.int64), q).astype(np.float32)
    return methylated, rate, {"total": total}


def _regions(cfg: _Config, features: _Features, rng: np.random.Generator):
    """Region names, linked genes and loadings ``(latent_dim, n_regions)``."""
    n, dim = cfg.p["n_regions"], cfg.p["latent_dim"]
    sd = 1.0 / np.sqrt(dim)
    W = features.loadings["rna"]
    linked = rng.random(n) < cfg.p["methylation_link_fraction"]
    gene = rng.integers(W.shape[1], size=n)
    loadings = rng.normal(scale=sd, size=(dim, n))
    noise = rng.normal(scale=cfg.p["link_noise"] * sd, size=(dim, int(linked.sum())))
    loadings[:, linked] = -W[:, gene[linked]] + noise
    gene_names = np.where(linked, features.genome.genes.index.to_numpy()[gene], "")
    width = len(str(n - 1))
    names = pd.Index([f"region_{r:0{width}d}" for r in range(n)])
    return names, gene_names, loadings


def build_methylation(
    cfg: _Config, cells: _Cells, features: _Features, rng: np.random.Generator
) -> tuple[_ModalityModel, np.ndarray]:
    """The methylation model (see the module docstring) and its per-batch depth scale."""
    p, n_batches = cfg.p, len(cfg.batches)
    names, gene_names, loadings = _regions(cfg, features, rng)
    n = len(names)
    baseline = rng.normal(scale=1.5, size=n)
    shift = rng.normal(scale=p["batch_effect"], size=(n_batches, n))
    scale = np.exp(rng.normal(scale=p["library_batch_sd"], size=n_batches))
    depth = _cell_factor(1.0, p["methylation_depth_sd"], scale, cells.batch, rng)
    coverage = p["methylation_coverage"] * rng.lognormal(-0.125, 0.5, n)
    var = pd.DataFrame(
        {"gene": gene_names.astype(str), "coverage_mean": coverage.astype(np.float32)},
        index=names,
    )
    model = _ModalityModel(
        var=var,
        loadings=loadings.astype(np.float32),
        baseline=baseline.astype(np.float32),
        shift=shift.astype(np.float32),
        cell_factor=depth,
        draw=partial(_draw_methylation, concentration=p["methylation_concentration"]),
    )
    model.var["true_baseline"] = model.baseline
    return model, scale
