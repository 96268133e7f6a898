"""The mosaic simulator's entry point."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import mudata as md
import numpy as np

from ..._utils import RandomState, check_random_state
from .assemble import _add_feature_graphs, _assemble, _ground_truth
from .batches import MODALITIES, _validate
from .cells import _obs_frame, _simulate_cells
from .genome import _simulate_features
from .methylation import build_methylation
from .modalities import _build_models, _generate_blocks


def simulate_mosaic(
    *,
    n_cells: int = 3000,
    batches: Mapping[str, Sequence[str]] | None = None,
    batch_sizes: Mapping[str, float] | Sequence[float] | None = None,
    missing_types: Mapping[str, Sequence[str | int]] | None = None,
    n_genes: int = 500,
    n_peaks: int = 2000,
    n_proteins: int = 30,
    n_cell_types: int = 8,
    latent_dim: int = 10,
    type_concentration: float = 5.0,
    trajectory_length: float = 1.5,
    within_type_sd: float = 0.25,
    batch_effect: float = 0.5,
    library_batch_sd: float = 0.2,
    rna_library_size: float = 2000.0,
    rna_library_sd: float = 0.3,
    rna_dispersion: float = 5.0,
    atac_open_fraction: float = 0.07,
    atac_depth_sd: float = 0.3,
    protein_background: float = 20.0,
    protein_foreground_fold: float = 10.0,
    protein_background_prob: float = 0.1,
    protein_library_sd: float = 0.2,
    protein_dispersion: float = 10.0,
    n_regions: int = 1000,
    methylation_coverage: float = 2.0,
    methylation_depth_sd: float = 0.3,
    methylation_concentration: float = 20.0,
    methylation_link_fraction: float = 0.5,
    links_per_gene: float = 2.0,
    double_link_fraction: float = 0.2,
    negative_link_fraction: float = 0.2,
    link_noise: float = 0.5,
    protein_noise: float = 0.2,
    n_chromosomes: int = 5,
    prior_window: int = 50_000,
    store_means: bool | None = None,
    return_full: bool = False,
    chunk_size: int = 10_000,
    random_state: RandomState = 0,
) -> md.MuData | tuple[md.MuData, md.MuData]:
    """Simulate a multi-omics mosaic (RNA / ATAC / protein / methylation in any subset per batch)
    with truth.

    Each cell has a cell type ``k`` and a continuous state ``t`` in ``[0, 1]``; its latent is
    ``z = centre_k + (t - 0.5) * trajectory_length * direction_k + noise``. Gene ``g`` has a
    loading ``W_g``; a peak linked to gene(s) has loading ``sum(sign * W_g) / sqrt(n) + noise``
    and an unlinked peak a random one; protein ``q`` copies the loading of its gene (plus
    noise). In batch ``b`` every feature is shifted on the log (ATAC: logit) scale by
    ``shift[b, feature] ~ N(0, batch_effect)`` and every modality's per-cell size factor is
    scaled by ``library_scale[b, mod]``. RNA counts are negative binomial around
    ``library * softmax(baseline + z W + shift)``; ATAC is Bernoulli with probability
    ``sigmoid(baseline + z V + shift + log depth)``; protein counts are a totalVI-like
    background / foreground negative-binomial mixture; methylation holds methylated reads in
    ``X`` and the coverage in ``layers["total"]``, beta-binomial around the rate ``sigmoid(
    baseline + z M + shift)`` with region loadings anti-correlated with a linked gene's
    (:mod:`.methylation`). See ``docs/simulator_mosaic.md`` for
    every stored ground-truth key.

    Parameters
    ----------
    n_cells
        Number of cells over all batches.
    batches
        Batch name -> measured modalities (any non-empty subset of ``"rna"``, ``"atac"``,
        ``"protein"``, ``"methylation"``). Default: ``{"paired": ("rna", "atac"), "rna_only":
        ("rna",), "atac_only": ("atac",)}``, like ``mop_mosaic_rna_atac.h5mu``.
    batch_sizes
        Fraction of cells per batch (dict, or sequence in the order of ``batches``; sums to
        1). Default: equal split.
    missing_types
        Batch name -> cell types (names ``"type_0"``... or indices) absent from that batch.
        Cell types are otherwise shared by all batches, with batch-specific proportions drawn
        from ``Dirichlet(type_concentration)``.
    n_genes, n_peaks, n_proteins
        Feature counts (peaks and proteins only matter if some batch measures them).
    n_cell_types, latent_dim
        Number of discrete cell types and dimension of the latent space.
    type_concentration
        Dirichlet concentration of the per-batch cell-type proportions (small = more varied).
    trajectory_length, within_type_sd
        Length of each type's continuous trajectory in latent units, and isotropic noise sd.
    batch_effect
        Sd of the per-batch, per-feature log-scale (ATAC: logit-scale) shift.
    library_batch_sd
        Sd of the per-batch log library-size (ATAC: depth) scale of each modality.
    rna_library_size, rna_library_sd, rna_dispersion
        Mean RNA library size (before the batch scale), its per-cell log-normal sd, and the
        NB inverse dispersion ``theta``.
    atac_open_fraction
        Target fraction of nonzero ATAC entries (calibrated on the ATAC-measured cells).
    atac_depth_sd
        Per-cell log-normal sd of the ATAC depth (``log depth`` is added to the logits).
    protein_background
        Typical background (ambient) count of a protein per cell; each protein's background
        mean is this times a log-normal factor (sd 0.5, mean 1).
    protein_foreground_fold
        Typical foreground-to-background ratio of a protein.
    protein_background_prob
        Probability that an entry comes from the background component only.
    protein_library_sd, protein_dispersion
        Per-cell log-normal sd of the protein library factor, and the NB inverse dispersion.
    n_regions
        Methylation regions (only matter if some batch measures methylation).
    methylation_coverage
        Typical reads per region and cell (Poisson mean; each region's is this times a
        log-normal factor, sd 0.5, mean 1).
    methylation_depth_sd
        Per-cell log-normal sd of the methylation depth.
    methylation_concentration
        Beta-binomial concentration of the methylated reads (large: binomial).
    methylation_link_fraction
        Fraction of regions linked to a gene (loading: minus the gene's, plus ``link_noise``).
    links_per_gene
        Mean number of gene-peak links per gene.
    double_link_fraction
        Fraction of linked peaks that are linked to two adjacent genes.
    negative_link_fraction
        Fraction of gene-peak links with sign -1 (accessibility anti-correlated).
    link_noise, protein_noise
        Sd of the noise added to a linked peak's (a protein's) loading, relative to the sd of
        a gene loading.
    n_chromosomes
        Number of chromosomes the genes and peaks are laid out on.
    prior_window
        Window (bp) around each gene body for the window-based prior ``varp["gene_peak"]``.
    store_means
        Store the exact means in ``layers["true_expression"]`` (dense float32). Default
        (``None``): only when ``n_cells <= 20000``.
    return_full
        Also return the full data set (every modality for every cell), for imputation
        benchmarks.
    chunk_size
        Cells generated at once (bounds memory; it is part of the random stream).
    random_state
        Seed or generator.

    Returns
    -------
    ``mdata`` or, with ``return_full=True``, ``(mdata, full)``. ``mdata`` has one modality per
    measured modality holding only its measured cells; ``full`` has the same cells, features
    and ground truth with every modality for every cell (its values for measured cells equal
    ``mdata``'s, and ``full.obs[f"measured_{mod}"]`` marks them). ``mdata`` is the same
    whether or not ``return_full`` is set.

    Examples
    --------
    >>> mdata, full = simulate_mosaic(n_cells=600, return_full=True)
    >>> mdata["rna"].n_obs, full["rna"].n_obs
    (400, 600)
    """
    cfg = _validate(dict(locals()))
    rng = check_random_state(random_state)
    cells = _simulate_cells(cfg, rng)
    features = _simulate_features(cfg, rng)
    models, library_scale, atac_offset = _build_models(cfg, cells, features, rng)
    seed = int(rng.integers(2**63))
    methylation_scale = np.ones(len(cfg.batches))
    if "methylation" in cfg.used_mods:  # its own stream: the other modalities stay the same
        meth_rng = np.random.default_rng([seed, MODALITIES.index("methylation"), 1])
        models["methylation"], methylation_scale = build_methylation(cfg, cells, features, meth_rng)
    library_scale = np.column_stack([library_scale, methylation_scale])

    measured = {m: cfg.measured(m) for m in cfg.used_mods}
    everyone = {m: list(cfg.batch_order) for m in cfg.used_mods}
    blocks = {
        m: _generate_blocks(
            model,
            cells,
            everyone[m] if return_full else measured[m],
            seed=seed,
            mod_index=MODALITIES.index(m),
            chunk_size=cfg.p["chunk_size"],
            store_means=cfg.p["store_means"],
        )
        for m, model in models.items()
    }
    obs = _obs_frame(cfg, cells)
    sim = _ground_truth(cfg, cells, features, models, library_scale, atac_offset, random_state)
    window = cfg.p["prior_window"]

    mdata = _assemble(models, blocks, measured, cells, obs)
    _add_feature_graphs(mdata, sim["links"], features, window)
    mdata.uns["sim"] = sim
    if not return_full:
        return mdata
    full = _assemble(models, blocks, everyone, cells, obs)
    for m in cfg.used_mods:
        measured_names = [cfg.batch_names[b] for b in measured[m]]
        full.obs[f"measured_{m}"] = full.obs["batch"].isin(measured_names).to_numpy()
    _add_feature_graphs(full, sim["links"], features, window)
    full.uns["sim"] = copy.deepcopy(sim)
    return mdata, full
