"""Features of the mosaic simulator: genome coordinates of genes and peaks, the true gene-peak
links, and the loadings of every feature on the latent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .batches import _Config, _require

# Genome layout (base pairs): gene bodies, intergenic gaps, peak widths, and how far a linked
# peak may lie from its gene's body.
_GENE_LENGTH_MEDIAN = 20_000
_GAP_MEAN = 50_000
_GAP_MIN = 5_000
_PEAK_WIDTH_MIN = 200
_PEAK_WIDTH_MEAN_EXTRA = 300
_LINK_DISTANCE = 50_000
_CHROM_STRIDE = 10**12  # global coordinate = chromosome index * stride + position

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
