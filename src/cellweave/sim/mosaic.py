"""Multi-omics mosaic simulator with ground truth.

Cells carry a discrete cell type and a continuous state (a short trajectory inside each type)
in a latent space. RNA, ATAC and protein are generated from that latent through feature
loadings tied together by known links (gene-peak with a sign, gene-protein), with per-batch
feature shifts and library scales; each batch measures any subset of the modalities. The
layout mirrors ``mop_mosaic_rna_atac.h5mu``: one MuData whose modalities hold only their
measured cells, ``obs["batch"]``, presence masks ``obsm[mod]`` and a gene-peak prior in
``varp["gene_peak"]``. Every ground-truth key is described in ``docs/simulator_mosaic.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import brentq

from .._utils import RandomState, check_random_state
from ..errors import InputError
from ._counts import sample_nb

__all__ = ["DEFAULT_BATCHES", "MODALITIES", "simulate_mosaic"]

MODALITIES = ("rna", "atac", "protein")
DEFAULT_BATCHES: dict[str, tuple[str, ...]] = {
    "paired": ("rna", "atac"),
    "rna_only": ("rna",),
    "atac_only": ("atac",),
}

# Genome layout (base pairs): gene bodies, intergenic gaps, peak widths, and how far a linked
# peak may lie from its gene's body.
_GENE_LENGTH_MEDIAN = 20_000
_GAP_MEAN = 50_000
_GAP_MIN = 5_000
_PEAK_WIDTH_MIN = 200
_PEAK_WIDTH_MEAN_EXTRA = 300
_LINK_DISTANCE = 50_000
_CHROM_STRIDE = 10**12  # global coordinate = chromosome index * stride + position
_CALIBRATION_CELLS = 1000
_CALIBRATION_PEAKS = 2000
_AUTO_STORE_MEANS_MAX_CELLS = 20_000
_FACTOR_KEYS = {"rna": "true_library_size", "atac": "true_depth", "protein": "true_library_size"}

# parameter checks: name -> minimum for integers; name -> allowed interval for floats
_INT_MIN = {
    "n_cells": 1,
    "n_genes": 1,
    "n_cell_types": 1,
    "latent_dim": 1,
    "n_chromosomes": 1,
    "prior_window": 0,
    "chunk_size": 1,
}
_FLOAT_RANGE = {
    **dict.fromkeys(
        (
            "trajectory_length",
            "within_type_sd",
            "batch_effect",
            "library_batch_sd",
            "rna_library_sd",
            "atac_depth_sd",
            "protein_library_sd",
            "links_per_gene",
            "link_noise",
            "protein_noise",
        ),
        "[0, inf)",
    ),
    **dict.fromkeys(
        (
            "type_concentration",
            "rna_library_size",
            "rna_dispersion",
            "protein_background",
            "protein_foreground_fold",
            "protein_dispersion",
        ),
        "(0, inf)",
    ),
    "double_link_fraction": "[0, 1]",
    "negative_link_fraction": "[0, 1]",
    "protein_background_prob": "[0, 1)",
    "atac_open_fraction": "(0, 1)",
}


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _check_int(name: str, value: object, minimum: int) -> int:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    _require(ok and value >= minimum, f"{name}={value!r} is invalid: pass an integer >= {minimum}")
    return int(value)


def _check_float(name: str, value: object, interval: str) -> float:
    """Check that ``value`` is a finite number in ``interval``, e.g. ``"[0, 1)"``."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    ok = ok and bool(np.isfinite(value))
    ok = ok and (value >= low if interval[0] == "[" else value > low)
    ok = ok and (value <= high if interval[-1] == "]" else value < high)
    _require(ok, f"{name}={value!r} is invalid: pass a finite number in {interval}")
    return float(value)


def _check_batches(batches: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    if batches is None:
        return dict(DEFAULT_BATCHES)
    _require(
        isinstance(batches, Mapping) and len(batches) > 0,
        "batches must be a non-empty dict batch name -> measured modalities, "
        "e.g. {'paired': ('rna', 'atac'), 'rna_only': ('rna',)}",
    )
    out: dict[str, tuple[str, ...]] = {}
    for name, mods in batches.items():
        _require(
            isinstance(name, str) and name != "",
            f"batch name {name!r} is invalid: use non-empty strings as batch names",
        )
        mods = (mods,) if isinstance(mods, str) else tuple(mods)
        unknown = [m for m in mods if m not in MODALITIES]
        if unknown:
            raise InputError(
                f"batch {name!r} lists unknown modality {unknown[0]!r}: "
                f"use a subset of {list(MODALITIES)}"
            )
        _require(
            len(mods) > 0,
            f"batch {name!r} measures no modality: give it at least one of {list(MODALITIES)}",
        )
        out[name] = tuple(m for m in MODALITIES if m in mods)
    return out


def _batch_counts(
    n_cells: int, names: list[str], batch_sizes: Mapping[str, float] | Sequence[float] | None
) -> np.ndarray:
    """Cells per batch from fractions (largest-remainder rounding)."""
    n_batches = len(names)
    if batch_sizes is None:
        fractions = np.full(n_batches, 1.0 / n_batches)
    elif isinstance(batch_sizes, Mapping):
        _require(
            set(batch_sizes) == set(names),
            f"batch_sizes keys {sorted(batch_sizes)} do not match the batches {names}: "
            "give one fraction per batch",
        )
        fractions = np.array([batch_sizes[n] for n in names], dtype=np.float64)
    else:
        fractions = np.asarray(list(batch_sizes), dtype=np.float64)
        _require(
            fractions.shape == (n_batches,),
            f"batch_sizes has {fractions.size} entries but there are {n_batches} batches: "
            "give one fraction per batch, in the order of batches",
        )
    _require(
        bool(np.all(np.isfinite(fractions)) and np.all(fractions > 0)),
        "batch_sizes must be positive fractions: give every batch a fraction > 0",
    )
    _require(
        abs(fractions.sum() - 1.0) < 1e-3,
        f"batch_sizes sum to {fractions.sum():.4g}, not 1: pass fractions that sum to 1",
    )
    raw = fractions * n_cells
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n_cells - counts.sum()]] += 1
    empty = [names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise InputError(
            f"batch {empty[0]!r} gets 0 of n_cells={n_cells} cells: "
            "increase n_cells or its fraction"
        )
    return counts


def _type_names(n_types: int) -> list[str]:
    width = len(str(n_types - 1))
    return [f"type_{k:0{width}d}" for k in range(n_types)]


def _type_index(batch: str, t: object, type_names: list[str]) -> int:
    if isinstance(t, int | np.integer) and not isinstance(t, bool) and 0 <= t < len(type_names):
        return int(t)
    if isinstance(t, str) and t in type_names:
        return type_names.index(t)
    raise InputError(
        f"missing_types[{batch!r}] names unknown cell type {t!r}: "
        f"use names {type_names[0]!r}..{type_names[-1]!r} or indices"
    )


def _check_missing_types(
    missing_types: Mapping[str, Sequence[str | int]] | None,
    batch_names: list[str],
    type_names: list[str],
) -> np.ndarray:
    """Boolean (n_batches, n_types) mask of the types present in each batch."""
    present = np.ones((len(batch_names), len(type_names)), dtype=bool)
    if missing_types is None:
        return present
    _require(
        isinstance(missing_types, Mapping),
        "missing_types must be a dict batch name -> cell types to leave out of that batch",
    )
    for batch, types in missing_types.items():
        _require(
            batch in batch_names,
            f"missing_types names unknown batch {batch!r}: use one of {batch_names}",
        )
        types = [types] if isinstance(types, str | int | np.integer) else list(types)
        for t in types:
            present[batch_names.index(batch), _type_index(batch, t, type_names)] = False
    empty = [batch_names[i] for i in np.flatnonzero(~present.any(axis=1))]
    if empty:
        raise InputError(
            f"missing_types removes every cell type from batch {empty[0]!r}: keep at least one"
        )
    absent = [type_names[k] for k in np.flatnonzero(~present.any(axis=0))]
    if absent:
        raise InputError(
            f"missing_types removes cell type {absent[0]!r} from every batch: "
            "keep it in at least one batch or lower n_cell_types"
        )
    return present


@dataclass(frozen=True)
class _Config:
    """Validated parameters."""

    batches: dict[str, tuple[str, ...]]
    batch_counts: np.ndarray  # cells per batch, in the order of ``batches``
    batch_order: list[int]  # order of the batches' cell blocks
    used_mods: list[str]
    type_names: list[str]
    present: np.ndarray  # (n_batches, n_types) cell types present per batch
    p: dict[str, int | float | bool]  # numeric parameters
    missing_types_given: bool

    @property
    def batch_names(self) -> list[str]:
        return list(self.batches)

    def measured(self, mod: str) -> list[int]:
        """Batches (in block order) that measure ``mod``."""
        return [b for b in self.batch_order if mod in self.batches[self.batch_names[b]]]


def _validate(params: dict[str, object]) -> _Config:
    batches = _check_batches(params["batches"])
    names = list(batches)
    used_mods = [m for m in MODALITIES if any(m in mods for mods in batches.values())]
    p: dict[str, int | float | bool] = {
        name: _check_int(name, params[name], low) for name, low in _INT_MIN.items()
    }
    p["n_peaks"] = _check_int("n_peaks", params["n_peaks"], int("atac" in used_mods))
    p["n_proteins"] = _check_int("n_proteins", params["n_proteins"], int("protein" in used_mods))
    if "protein" in used_mods:
        _require(
            p["n_proteins"] <= p["n_genes"],
            f"n_proteins={p['n_proteins']} exceeds n_genes={p['n_genes']}: each protein is the "
            "product of a distinct gene; lower n_proteins or raise n_genes",
        )
    for mod, key in (("atac", "n_peaks"), ("protein", "n_proteins")):
        if mod not in used_mods:
            p[key] = 0  # features of an unmeasured modality are not simulated
    for name, interval in _FLOAT_RANGE.items():
        p[name] = _check_float(name, params[name], interval)
    store_means = params["store_means"]
    _require(
        store_means is None or isinstance(store_means, bool),
        f"store_means={store_means!r} is invalid: pass True, False or None (automatic)",
    )
    _require(
        isinstance(params["return_full"], bool),
        f"return_full={params['return_full']!r} is invalid: pass True or False",
    )
    p["store_means"] = (
        p["n_cells"] <= _AUTO_STORE_MEANS_MAX_CELLS if store_means is None else store_means
    )
    type_names = _type_names(p["n_cell_types"])
    # cells are grouped by batch; batches are ordered by their first measured modality, so the
    # MuData (which lists cells modality by modality) keeps the grouping
    order = sorted(range(len(names)), key=lambda b: (used_mods.index(batches[names[b]][0]), b))
    return _Config(
        batches=batches,
        batch_counts=_batch_counts(p["n_cells"], names, params["batch_sizes"]),
        batch_order=order,
        used_mods=used_mods,
        type_names=type_names,
        present=_check_missing_types(params["missing_types"], names, type_names),
        p=p,
        missing_types_given=params["missing_types"] is not None,
    )


# --------------------------------------------------------------------------------------------
# cells: cell types, continuous state, latent, batches
# --------------------------------------------------------------------------------------------


@dataclass
class _Cells:
    batch: np.ndarray  # (n,) batch index
    cell_type: np.ndarray  # (n,) type index
    pseudotime: np.ndarray  # (n,) continuous state in [0, 1]
    latent: np.ndarray  # (n, latent_dim) float32
    centres: np.ndarray  # (n_types, latent_dim)
    directions: np.ndarray  # (n_types, latent_dim) unit vectors
    proportions: np.ndarray  # (n_batches, n_types)


def _simulate_cells(cfg: _Config, rng: np.random.Generator) -> _Cells:
    n_types, dim = len(cfg.type_names), cfg.p["latent_dim"]
    centres = rng.normal(size=(n_types, dim))
    directions = rng.normal(size=(n_types, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    proportions = rng.dirichlet(
        np.full(n_types, cfg.p["type_concentration"]), size=len(cfg.batches)
    )
    proportions = np.where(cfg.present, proportions, 0.0)
    proportions /= proportions.sum(axis=1, keepdims=True)

    counts = cfg.batch_counts
    batch = np.concatenate([np.full(counts[b], b, dtype=np.int64) for b in cfg.batch_order])
    cell_type = np.concatenate(
        [rng.choice(n_types, size=int(counts[b]), p=proportions[b]) for b in cfg.batch_order]
    )
    pseudotime = rng.random(batch.size)
    latent = (
        centres[cell_type]
        + (pseudotime - 0.5)[:, None] * cfg.p["trajectory_length"] * directions[cell_type]
        + rng.normal(scale=cfg.p["within_type_sd"], size=(batch.size, dim))
    )
    return _Cells(
        batch=batch,
        cell_type=cell_type,
        pseudotime=pseudotime.astype(np.float32),
        latent=latent.astype(np.float32),
        centres=centres,
        directions=directions,
        proportions=proportions,
    )


def _obs_frame(cfg: _Config, cells: _Cells) -> pd.DataFrame:
    n = cells.batch.size
    width = len(str(n - 1))
    return pd.DataFrame(
        {
            "batch": pd.Categorical.from_codes(cells.batch, categories=cfg.batch_names),
            "cell_type": pd.Categorical.from_codes(cells.cell_type, categories=cfg.type_names),
            "pseudotime": cells.pseudotime,
        },
        index=pd.Index([f"cell_{i:0{width}d}" for i in range(n)]),
    )


# --------------------------------------------------------------------------------------------
# features: genome coordinates, links, loadings
# --------------------------------------------------------------------------------------------


@dataclass
class _Genome:
    genes: pd.DataFrame  # chrom, start, end
    peaks: pd.DataFrame  # chrom, start, end, n_linked_genes
    link_gene: np.ndarray  # (n_links,) gene index of each gene-peak link
    link_peak: np.ndarray  # (n_links,) peak index
    link_sign: np.ndarray  # (n_links,) +1 / -1


def _place_genes(n_genes: int, n_chromosomes: int, rng: np.random.Generator):
    """Gene bodies laid out along chromosomes: chrom index, start, end, chromosome lengths."""
    chrom = np.repeat(
        np.arange(n_chromosomes),
        [len(a) for a in np.array_split(np.arange(n_genes), n_chromosomes)],
    )
    length = np.round(_GENE_LENGTH_MEDIAN * rng.lognormal(0.0, 0.7, n_genes)).astype(np.int64)
    gap = np.round(_GAP_MIN + rng.exponential(_GAP_MEAN, n_genes)).astype(np.int64)
    step = gap + length
    start = np.empty(n_genes, dtype=np.int64)
    chrom_lengths = np.empty(n_chromosomes, dtype=np.int64)
    for c in range(n_chromosomes):
        rows = np.flatnonzero(chrom == c)
        ends = np.cumsum(step[rows])
        start[rows] = ends - length[rows]
        chrom_lengths[c] = ends[-1] + _GAP_MIN + rng.integers(_GAP_MEAN)
    return chrom, start, start + length, chrom_lengths


def _neighbour_gene(chrom: np.ndarray) -> np.ndarray:
    """Index of the adjacent gene on the same chromosome (next, else previous; -1 if none)."""
    n = chrom.size
    idx = np.arange(n)
    nxt = np.where((idx + 1 < n) & (np.roll(chrom, -1) == chrom), idx + 1, -1)
    prv = np.where((idx > 0) & (np.roll(chrom, 1) == chrom), idx - 1, -1)
    return np.where(nxt >= 0, nxt, prv)


def _make_unique_starts(chrom: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Nudge sorted peak starts so that no two peaks on a chromosome share a start."""
    glob = chrom * _CHROM_STRIDE + start
    ramp = np.arange(glob.size)
    glob = np.maximum.accumulate(glob - ramp) + ramp
    return glob - chrom * _CHROM_STRIDE


def _simulate_genome(cfg: _Config, rng: np.random.Generator) -> _Genome:
    """Genes and peaks on chromosomes, and the true gene-peak links.

    A linked peak lies within ``_LINK_DISTANCE`` of its gene's body; a peak linked to two
    genes links adjacent genes and lies between them; unlinked peaks lie anywhere.
    """
    n_genes, n_peaks = cfg.p["n_genes"], cfg.p["n_peaks"]
    n_chromosomes = min(cfg.p["n_chromosomes"], n_genes)
    g_chrom, g_start, g_end, chrom_lengths = _place_genes(n_genes, n_chromosomes, rng)
    chrom_names = np.array([f"chr{c + 1}" for c in range(n_chromosomes)])
    width = len(str(n_genes - 1))
    genes = pd.DataFrame(
        {"chrom": chrom_names[g_chrom], "start": g_start, "end": g_end},
        index=pd.Index([f"gene_{g:0{width}d}" for g in range(n_genes)]),
    )

    n_links = round(cfg.p["links_per_gene"] * n_genes) if n_peaks else 0
    n_linked = min(round(n_links / (1.0 + cfg.p["double_link_fraction"])), n_links)
    _require(
        n_linked <= n_peaks,
        f"links_per_gene={cfg.p['links_per_gene']} needs {n_linked} linked peaks but "
        f"n_peaks={n_peaks}: increase n_peaks or lower links_per_gene",
    )
    first = rng.integers(n_genes, size=n_linked)
    second = _neighbour_gene(g_chrom)[first]
    two = np.flatnonzero((rng.random(n_linked) < cfg.p["double_link_fraction"]) & (second >= 0))

    lo = np.maximum(g_start[first] - _LINK_DISTANCE, 0)
    hi = g_end[first] + _LINK_DISTANCE
    a, b = first[two], second[two]
    lo[two] = np.minimum(g_end[a], g_end[b])
    hi[two] = np.maximum(np.maximum(g_start[a], g_start[b]), lo[two] + 1)
    n_free = n_peaks - n_linked
    free_chrom = rng.choice(n_chromosomes, size=n_free, p=chrom_lengths / chrom_lengths.sum())
    p_chrom = np.concatenate([g_chrom[first], free_chrom])
    p_pos = np.concatenate([rng.integers(lo, hi), rng.integers(0, chrom_lengths[free_chrom])])
    p_width = _PEAK_WIDTH_MIN + np.round(rng.exponential(_PEAK_WIDTH_MEAN_EXTRA, n_peaks))

    order = np.lexsort((p_pos, p_chrom))
    rank = np.empty(n_peaks, dtype=np.int64)
    rank[order] = np.arange(n_peaks)
    p_chrom, p_width = p_chrom[order], p_width[order].astype(np.int64)
    p_pos = _make_unique_starts(p_chrom, p_pos[order])
    p_end = p_pos + p_width

    link_gene = np.concatenate([first, second[two]])
    link_peak = rank[np.concatenate([np.arange(n_linked), two])]
    negative = rng.random(link_gene.size) < cfg.p["negative_link_fraction"]
    peak_chrom = chrom_names[p_chrom]
    peaks = pd.DataFrame(
        {
            "chrom": peak_chrom,
            "start": p_pos,
            "end": p_end,
            "n_linked_genes": np.bincount(link_peak, minlength=n_peaks).astype(np.int8),
        },
        index=pd.Index([f"{c}_{s}_{e}" for c, s, e in zip(peak_chrom, p_pos, p_end, strict=True)]),
    )
    return _Genome(genes, peaks, link_gene, link_peak, np.where(negative, -1, 1).astype(np.int8))


def _window_prior(genes: pd.DataFrame, peaks: pd.DataFrame, window: int) -> tuple[np.ndarray, ...]:
    """Gene-peak index pairs whose peak overlaps the gene body extended by ``window`` bp."""
    chroms = {c: i for i, c in enumerate(pd.unique(pd.concat([genes["chrom"], peaks["chrom"]])))}
    g_off = genes["chrom"].map(chroms).to_numpy(np.int64) * _CHROM_STRIDE
    p_off = peaks["chrom"].map(chroms).to_numpy(np.int64) * _CHROM_STRIDE
    p_start = peaks["start"].to_numpy(np.int64) + p_off
    p_end = peaks["end"].to_numpy(np.int64) + p_off
    order = np.argsort(p_start, kind="stable")
    max_width = int((p_end - p_start).max()) if len(peaks) else 0
    w_start = genes["start"].to_numpy(np.int64) - window + g_off
    w_end = genes["end"].to_numpy(np.int64) + window + g_off
    lo = np.searchsorted(p_start[order], w_start - max_width, side="left")
    hi = np.searchsorted(p_start[order], w_end, side="right")
    n_cand = hi - lo
    gene_idx = np.repeat(np.arange(len(genes)), n_cand)
    within = np.arange(n_cand.sum()) - np.repeat(np.cumsum(n_cand) - n_cand, n_cand)
    peak_idx = order[np.repeat(lo, n_cand) + within]
    keep = p_end[peak_idx] >= w_start[gene_idx]
    return gene_idx[keep], peak_idx[keep]


def _linked_loadings(
    W: np.ndarray, genes: np.ndarray, rows: np.ndarray, signs: np.ndarray, n_out: int
) -> np.ndarray:
    """Sum of signed gene loadings per output feature, divided by sqrt(number of genes)."""
    out = np.zeros((n_out, W.shape[0]))
    np.add.at(out, rows, (W[:, genes] * signs).T)
    return (out / np.sqrt(np.maximum(np.bincount(rows, minlength=n_out), 1))[:, None]).T


@dataclass
class _Features:
    genome: _Genome
    var: dict[str, pd.DataFrame]
    loadings: dict[str, np.ndarray]  # mod -> (latent_dim, n_features)
    baselines: dict[str, np.ndarray]
    protein_gene: np.ndarray  # gene index of each protein


def _simulate_features(cfg: _Config, rng: np.random.Generator) -> _Features:
    """Loadings: genes ~ N(0, 1/latent_dim); linked peaks and proteins follow their genes."""
    genome = _simulate_genome(cfg, rng)
    dim, n_genes = cfg.p["latent_dim"], cfg.p["n_genes"]
    n_peaks, n_proteins = cfg.p["n_peaks"], cfg.p["n_proteins"]
    sd = 1.0 / np.sqrt(dim)
    W = rng.normal(scale=sd, size=(dim, n_genes))
    V = rng.normal(scale=sd, size=(dim, n_peaks))
    linked = np.flatnonzero(genome.peaks["n_linked_genes"].to_numpy() > 0)
    signal = _linked_loadings(W, genome.link_gene, genome.link_peak, genome.link_sign, n_peaks)
    noise = rng.normal(scale=cfg.p["link_noise"] * sd, size=(dim, linked.size))
    V[:, linked] = signal[:, linked] + noise
    protein_gene = np.sort(rng.choice(n_genes, size=n_proteins, replace=False))
    U = W[:, protein_gene] + rng.normal(scale=cfg.p["protein_noise"] * sd, size=(dim, n_proteins))
    baselines = {
        "rna": rng.normal(size=n_genes),
        "atac": rng.normal(size=n_peaks),
        "protein": np.log(cfg.p["protein_foreground_fold"])
        + rng.normal(scale=0.5, size=n_proteins),
    }
    gene_names = genome.genes.index[protein_gene]
    background = cfg.p["protein_background"] * rng.lognormal(-0.125, 0.5, n_proteins)
    proteins = pd.DataFrame(
        {"gene": gene_names.to_numpy(), "background_mean": background.astype(np.float32)},
        index=pd.Index([f"prot_{g}" for g in gene_names]),
    )
    return _Features(
        genome=genome,
        var={"rna": genome.genes, "atac": genome.peaks, "protein": proteins},
        loadings={"rna": W, "atac": V, "protein": U},
        baselines=baselines,
        protein_gene=protein_gene,
    )


# --------------------------------------------------------------------------------------------
# per-modality likelihoods, one chunk of cells at a time
# --------------------------------------------------------------------------------------------


@dataclass
class _ModalityModel:
    """Everything needed to draw one modality for a chunk of cells."""

    var: pd.DataFrame
    loadings: np.ndarray  # (latent_dim, n_features) float32
    baseline: np.ndarray  # (n_features,) float32
    shift: np.ndarray  # (n_batches, n_features) float32
    cell_factor: np.ndarray  # (n_cells,) library size / depth (linear scale)
    draw: Callable[..., tuple[np.ndarray, np.ndarray]]


def _draw_rna(model, z, factor, shift, rng, *, dispersion: float):
    """NB counts around ``library * softmax(baseline + z W + shift)``."""
    eta = z @ model.loadings + (model.baseline + shift)
    eta -= eta.max(axis=1, keepdims=True)
    prob = np.exp(eta)
    prob /= prob.sum(axis=1, keepdims=True)
    mean = prob * factor[:, None]
    return sample_nb(mean, dispersion, rng), mean


def _sigmoid_(x: np.ndarray) -> np.ndarray:
    """Logistic function computed in place (``0.5 * tanh(x / 2) + 0.5``, no overflow)."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def _draw_atac(model, z, factor, shift, rng):
    """Bernoulli accessibility with probability ``sigmoid(baseline + z V + shift + log depth)``."""
    prob = z @ model.loadings
    prob += model.baseline + shift
    prob += np.log(factor)[:, None]
    _sigmoid_(prob)
    return rng.random(prob.shape, dtype=np.float32) < prob, prob


def _draw_protein(model, z, factor, shift, rng, *, background_prob: float, dispersion: float):
    """totalVI-like mixture: background ``NB(s * beta)`` with probability ``background_prob``,
    else foreground ``NB(s * beta * (1 + exp(baseline + z U)))``; ``s = library * exp(shift)``.
    """
    foreground = np.exp(z @ model.loadings + model.baseline)
    scale = factor[:, None] * (model.var["background_mean"].to_numpy(np.float32) * np.exp(shift))
    is_background = rng.random(foreground.shape) < background_prob
    counts = sample_nb(scale * np.where(is_background, 1.0, 1.0 + foreground), dispersion, rng)
    return counts, scale * (1.0 + (1.0 - background_prob) * foreground)


def _dense_to_csr(values: np.ndarray) -> sp.csr_matrix:
    """CSR float32 copy of a dense chunk (int32 indices while they fit)."""
    rows, cols = np.nonzero(values)
    index_dtype = np.int32 if rows.size < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(values.shape[0] + 1, dtype=index_dtype)
    np.cumsum(np.bincount(rows, minlength=values.shape[0]), out=indptr[1:])
    data = values[rows, cols].astype(np.float32)
    return sp.csr_matrix((data, cols.astype(index_dtype), indptr), shape=values.shape)


def _cell_factor(mean: float, sd: float, scale: np.ndarray, batch: np.ndarray, rng) -> np.ndarray:
    """Log-normal per-cell factor with the given mean, times the cell's batch scale."""
    return (mean * scale[batch] * rng.lognormal(-0.5 * sd**2, sd, batch.size)).astype(np.float32)


def _calibrate_atac(
    model: _ModalityModel, cells: _Cells, candidates: np.ndarray, target: float, rng
) -> float:
    """Logit offset that makes the mean open probability equal ``target``, estimated on a
    random subsample of cells and peaks."""
    pick = rng.choice(candidates, size=min(candidates.size, _CALIBRATION_CELLS), replace=False)
    n_peaks = model.loadings.shape[1]
    peaks = np.sort(rng.choice(n_peaks, size=min(n_peaks, _CALIBRATION_PEAKS), replace=False))
    lin = cells.latent[pick] @ model.loadings[:, peaks]
    lin += model.baseline[peaks] + model.shift[cells.batch[pick]][:, peaks]
    lin += np.log(model.cell_factor[pick])[:, None]

    def excess(offset: float) -> float:
        return float(_sigmoid_(lin + np.float32(offset)).mean()) - target

    return float(brentq(excess, -40.0, 40.0, xtol=1e-4))


def _build_models(
    cfg: _Config, cells: _Cells, features: _Features, rng: np.random.Generator
) -> tuple[dict[str, _ModalityModel], np.ndarray, float | None]:
    """Batch shifts, size factors and likelihoods; returns the models, the (n_batches, 3)
    library scales and the calibrated ATAC logit offset."""
    p, n_batches = cfg.p, len(cfg.batches)
    shifts = {
        m: rng.normal(scale=p["batch_effect"], size=(n_batches, len(features.var[m])))
        for m in cfg.used_mods
    }
    library_scale = np.exp(rng.normal(scale=p["library_batch_sd"], size=(n_batches, 3)))
    factors = {
        "rna": (p["rna_library_size"], p["rna_library_sd"]),
        "atac": (1.0, p["atac_depth_sd"]),
        "protein": (1.0, p["protein_library_sd"]),
    }
    factors = {
        m: _cell_factor(mean, sd, library_scale[:, MODALITIES.index(m)], cells.batch, rng)
        for m, (mean, sd) in factors.items()
    }
    draws = {
        "rna": partial(_draw_rna, dispersion=p["rna_dispersion"]),
        "atac": _draw_atac,
        "protein": partial(
            _draw_protein,
            background_prob=p["protein_background_prob"],
            dispersion=p["protein_dispersion"],
        ),
    }
    models = {
        m: _ModalityModel(
            var=features.var[m].copy(),
            loadings=features.loadings[m].astype(np.float32),
            baseline=features.baselines[m].astype(np.float32),
            shift=shifts[m].astype(np.float32),
            cell_factor=factors[m],
            draw=draws[m],
        )
        for m in cfg.used_mods
    }
    offset = None
    if "atac" in models:
        atac = models["atac"]
        candidates = np.flatnonzero(np.isin(cells.batch, cfg.measured("atac")))
        offset = _calibrate_atac(atac, cells, candidates, p["atac_open_fraction"], rng)
        atac.baseline = (atac.baseline + offset).astype(np.float32)
    for model in models.values():
        model.var["true_baseline"] = model.baseline
    return models, library_scale, offset


def _generate_blocks(
    model: _ModalityModel,
    cells: _Cells,
    batch_ids: list[int],
    *,
    seed: int,
    mod_index: int,
    chunk_size: int,
    store_means: bool,
) -> dict[int, tuple[sp.csr_matrix, np.ndarray | None]]:
    """Values (CSR float32) and means for every cell of each batch in ``batch_ids``.

    Each (batch, modality) pair has its own random stream, so a batch's values do not depend
    on which other batches are generated; cells are drawn ``chunk_size`` at a time.
    """
    blocks = {}
    for b in batch_ids:
        rng = np.random.default_rng([seed, b, mod_index])
        rows = np.flatnonzero(cells.batch == b)
        xs, means = [], []
        for start in range(0, rows.size, chunk_size):
            chunk = rows[start : start + chunk_size]
            values, mean = model.draw(
                model, cells.latent[chunk], model.cell_factor[chunk], model.shift[b], rng
            )
            xs.append(_dense_to_csr(values))
            if store_means:
                means.append(mean.astype(np.float32, copy=False))
        x = xs[0] if len(xs) == 1 else sp.vstack(xs, format="csr")
        blocks[b] = (x, np.concatenate(means) if store_means else None)
    return blocks


# --------------------------------------------------------------------------------------------
# assembly and ground truth
# --------------------------------------------------------------------------------------------


def _symmetric_links(
    var_names: pd.Index, source: Sequence[str], target: Sequence[str], weight: np.ndarray
) -> sp.csr_matrix:
    """Symmetric (n_vars, n_vars) CSR with ``weight`` at (source, target) and (target, source);
    pairs naming a feature absent from ``var_names`` are dropped."""
    i = var_names.get_indexer(pd.Index(source))
    j = var_names.get_indexer(pd.Index(target))
    keep = (i >= 0) & (j >= 0)
    i, j, w = i[keep], j[keep], np.asarray(weight, dtype=np.float32)[keep]
    n = len(var_names)
    rows, cols = np.concatenate([i, j]), np.concatenate([j, i])
    return sp.csr_matrix((np.concatenate([w, w]), (rows, cols)), shape=(n, n))


def _assemble(
    models: dict[str, _ModalityModel],
    blocks: dict[str, dict[int, tuple[sp.csr_matrix, np.ndarray | None]]],
    batch_ids: dict[str, list[int]],
    cells: _Cells,
    obs: pd.DataFrame,
) -> md.MuData:
    """One MuData from per-batch blocks: modality ``mod`` holds the batches ``batch_ids[mod]``."""
    mods = {}
    for mod, model in models.items():
        ids = batch_ids[mod]
        rows = np.concatenate([np.flatnonzero(cells.batch == b) for b in ids])
        parts = [blocks[mod][b] for b in ids]
        x = parts[0][0] if len(parts) == 1 else sp.vstack([x for x, _ in parts], format="csr")
        mod_obs = obs.iloc[rows][["batch", "cell_type"]].copy()
        mod_obs[_FACTOR_KEYS[mod]] = model.cell_factor[rows]
        adata = ad.AnnData(X=x, obs=mod_obs, var=model.var.copy())
        adata.varm["true_loadings"] = np.ascontiguousarray(model.loadings.T)
        if parts[0][1] is not None:
            adata.layers["true_expression"] = np.concatenate([mean for _, mean in parts])
        mods[mod] = adata
    with md.set_options(pull_on_update=False):
        mdata = md.MuData(mods)
    # MuData lists cells modality by modality; map the per-cell arrays onto its order
    idx = obs.index.get_indexer(mdata.obs_names)
    mdata.obs = obs.iloc[idx].copy()
    mdata.obsm["true_latent"] = cells.latent[idx]
    return mdata


def _links_frame(features: _Features) -> pd.DataFrame:
    """True links in long format: source gene, target peak/protein, sign, kind."""
    genome, var = features.genome, features.var
    gene_names = genome.genes.index
    links = pd.DataFrame(
        {
            "source": np.concatenate(
                [gene_names[genome.link_gene], gene_names[features.protein_gene]]
            ),
            "target": np.concatenate(
                [var["atac"].index[genome.link_peak], var["protein"].index.to_numpy()]
            ),
            "sign": np.concatenate(
                [genome.link_sign, np.ones(features.protein_gene.size, dtype=np.int8)]
            ).astype(np.int8),
            "kind": pd.Categorical(
                ["gene_peak"] * genome.link_gene.size
                + ["gene_protein"] * features.protein_gene.size,
                categories=["gene_peak", "gene_protein"],
            ),
        }
    )
    links = links.sort_values(["kind", "source", "target"], ignore_index=True)
    links.index = links.index.astype(str)
    return links


def _add_feature_graphs(mdata: md.MuData, links: pd.DataFrame, features: _Features, window: int):
    """``varp["feature_links"]`` (signed truth), ``varp["gene_peak"]`` (window prior) and
    ``varp["gene_protein"]`` (prior by name), each over ``mdata.var_names``."""
    names = mdata.var_names
    mdata.varp["feature_links"] = _symmetric_links(
        names, links["source"], links["target"], links["sign"].to_numpy()
    )
    genes, peaks = features.genome.genes, features.genome.peaks
    if "atac" in mdata.mod and "rna" in mdata.mod:
        gene_idx, peak_idx = _window_prior(genes, peaks, window)
        mdata.varp["gene_peak"] = _symmetric_links(
            names, genes.index[gene_idx], peaks.index[peak_idx], np.ones(gene_idx.size)
        )
    if "protein" in mdata.mod and "rna" in mdata.mod:
        prot = features.var["protein"]
        mdata.varp["gene_protein"] = _symmetric_links(
            names, prot["gene"], prot.index, np.ones(len(prot))
        )


def _params_record(cfg: _Config, random_state: RandomState) -> dict[str, object]:
    """Parameters in an ``.h5mu``-writable form (no ``None``, lists as arrays)."""
    params: dict[str, object] = dict(cfg.p)
    params["batches"] = {b: np.array(m, dtype=object) for b, m in cfg.batches.items()}
    params["batch_sizes"] = dict(zip(cfg.batch_names, cfg.batch_counts.tolist(), strict=True))
    if cfg.missing_types_given:
        params["missing_types"] = {
            b: np.array([t for k, t in enumerate(cfg.type_names) if not cfg.present[i, k]], object)
            for i, b in enumerate(cfg.batch_names)
            if not cfg.present[i].all()
        }
    if isinstance(random_state, int | np.integer):
        params["random_state"] = int(random_state)
    return params


def _ground_truth(
    cfg: _Config,
    cells: _Cells,
    features: _Features,
    models: dict[str, _ModalityModel],
    library_scale: np.ndarray,
    atac_offset: float | None,
    random_state: RandomState,
) -> dict[str, object]:
    names, latent_cols = cfg.batch_names, [f"z{d}" for d in range(cfg.p["latent_dim"])]
    sim: dict[str, object] = {
        "params": _params_record(cfg, random_state),
        "links": _links_frame(features),
        # features x batches: a wide frame would cost one HDF5 dataset per feature
        "batch_shift": {
            m: pd.DataFrame(model.shift.T, index=model.var.index, columns=names)
            for m, model in models.items()
        },
        "library_scale": pd.DataFrame(
            library_scale[:, [MODALITIES.index(m) for m in cfg.used_mods]],
            index=names,
            columns=cfg.used_mods,
        ),
        "cell_type_proportions": pd.DataFrame(
            cells.proportions, index=names, columns=cfg.type_names
        ),
        "type_centres": pd.DataFrame(
            cells.centres.astype(np.float32), index=cfg.type_names, columns=latent_cols
        ),
        "type_directions": pd.DataFrame(
            cells.directions.astype(np.float32), index=cfg.type_names, columns=latent_cols
        ),
    }
    if atac_offset is not None:
        sim["atac_logit_offset"] = atac_offset
    return sim


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
    """Simulate a multi-omics mosaic (RNA / ATAC / protein in any subset per batch) with truth.

    Each cell has a cell type ``k`` and a continuous state ``t`` in ``[0, 1]``; its latent is
    ``z = centre_k + (t - 0.5) * trajectory_length * direction_k + noise``. Gene ``g`` has a
    loading ``W_g``; a peak linked to gene(s) has loading ``sum(sign * W_g) / sqrt(n) + noise``
    and an unlinked peak a random one; protein ``q`` copies the loading of its gene (plus
    noise). In batch ``b`` every feature is shifted on the log (ATAC: logit) scale by
    ``shift[b, feature] ~ N(0, batch_effect)`` and every modality's per-cell size factor is
    scaled by ``library_scale[b, mod]``. RNA counts are negative binomial around
    ``library * softmax(baseline + z W + shift)``; ATAC is Bernoulli with probability
    ``sigmoid(baseline + z V + shift + log depth)``; protein counts are a totalVI-like
    background / foreground negative-binomial mixture. See ``docs/simulator_mosaic.md`` for
    every stored ground-truth key.

    Parameters
    ----------
    n_cells
        Number of cells over all batches.
    batches
        Batch name -> measured modalities (any non-empty subset of ``"rna"``, ``"atac"``,
        ``"protein"``). Default: ``{"paired": ("rna", "atac"), "rna_only": ("rna",),
        "atac_only": ("atac",)}``, like ``mop_mosaic_rna_atac.h5mu``.
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
