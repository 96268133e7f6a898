"""A section moved by a known transform: the ground truth an alignment is checked against."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._utils import RandomState, check_random_state
from ..errors import InputError
from ..validate import check_spatial

__all__ = ["CONTROLS", "PROTEIN_PANEL", "perturb_section", "simulate_rna_protein"]


def perturb_section(
    adata: AnnData,
    *,
    angle: float = 0.0,
    shift: Sequence[float] = (0.0, 0.0),
    drop: float = 0.0,
    thin: float = 1.0,
    mirror: bool = False,
    warp: float = 0.0,
    spatial_key: str = "spatial",
    random_state: RandomState = 0,
) -> tuple[AnnData, np.ndarray]:
    """A copy of a 2-D section moved by a known transform, to check an alignment against.

    In order: a fraction ``drop`` of the spots is removed, counts are binomially thinned
    (each molecule kept with probability ``thin``), the coordinates are mirrored (x flipped),
    warped by a smooth sine displacement of amplitude ``warp`` (one period over the section),
    rotated by ``angle`` degrees about their centroid and shifted by ``shift``.

    Returns
    -------
    ``(moved, truth)``: the moved copy and the original coordinates of its spots, i.e. where
    a perfect alignment onto ``adata`` puts them.
    """
    if not (0.0 <= drop < 1.0 and 0.0 < thin <= 1.0):
        raise InputError(f"drop must be in [0, 1) and thin in (0, 1], got {drop} and {thin}")
    rng = check_random_state(random_state)
    coords = check_spatial(adata, spatial_key=spatial_key, ndim=2)
    keep = np.sort(rng.choice(adata.n_obs, max(1, round(adata.n_obs * (1 - drop))), replace=False))
    moved = adata[keep].copy()
    if thin < 1.0:
        X = moved.X
        if sp.issparse(X):
            X = X.tocsr(copy=True)
            X.data = rng.binomial(np.rint(X.data).astype(np.int64), thin).astype(X.dtype)
            X.eliminate_zeros()
        else:
            X = rng.binomial(np.rint(np.asarray(X)).astype(np.int64), thin).astype(np.float32)
        moved.X = X
    truth = coords[keep]
    centre = truth.mean(axis=0)
    xy = truth - centre
    if mirror:
        xy[:, 0] = -xy[:, 0]
    if warp:
        extent = max(float(np.ptp(xy, axis=0).max()), 1e-12)
        xy = (
            xy
            + warp
            * np.c_[np.sin(2 * np.pi * xy[:, 1] / extent), np.sin(2 * np.pi * xy[:, 0] / extent)]
        )
    theta = np.deg2rad(angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved.obsm[spatial_key] = xy @ rot.T + centre + np.asarray(shift, dtype=float)
    return moved, truth


_PANEL = """
CD3E=CD3-TotalSeqB CD4=ADT_CD4 CD8A=CD8a_ACCCGCAC MS4A1=CD20_ACGCGGAA
CD14=CD14-TotalSeqB FCGR3A=CD16_ADT NCAM1=CD56_TACATAAG PTPRC=CD45RA-TotalSeqB
IL2RA=CD25_GCTCGTCA IL7R=prot_CD127 CCR7=CD197_ACGCTTGG SELL=CD62L-TotalSeqB
ITGAM=CD11b_AGGGCGTT ITGAX=ADT_CD11c HLA-DRA=HLA-DR_TotalSeqB CD19=CD19_CTATACGC
CD27=CD27_GCTGTGTA CD28=ADT_CD28 PDCD1=CD279_GAACCCGG CTLA4=CD152_GTCCATTG
TIGIT=TIGIT-TotalSeqB CD69=CD69_GTTGCATG CD68=ADT_CD68 CD33=CD33_CCAGTGGA
CD40=CD40_ATATGAGA CD274=CD274_CTTGTACC LAG3=CD223_TGGACCCT ICOS=CD278_CGACTCTT
NT5E=CD73_GCTACTTC CD9=CD9_CACTCAAC KLRB1=CD161-TotalSeqB CD34=ADT_CD34
CD38=CD38-TotalSeqB FOXP3=FOXP3_ATCGCCAT CD40LG=CD154_GGTAATGT TNFRSF4=CD134_ATCCGGCA
TNFRSF9=CD137_CCGTTATG BTLA=CD272_ACCGAACA PVR=CD155_TAAATCGT TNFRSF18=CD357_TCGTAGAT
"""
#: Gene symbol -> antibody name in the styles of CITE-seq / REAP-seq panels (``-TotalSeqB``,
#: ``ADT_``, barcode suffixes, CD names): every one is linked back to its gene by
#: :func:`cellweave.links.gene_protein_links`.
PROTEIN_PANEL: dict[str, str] = dict(pair.split("=") for pair in _PANEL.split())
#: Isotype controls of a panel: background only, linked to no gene.
CONTROLS = ("Control_Mouse_IgG2b_CATAAAGG", "Mouse_IgG1_TGTGTATA")


def simulate_rna_protein(
    *,
    n_spots: int = 600,
    n_genes: int = 200,
    n_proteins: int = 30,
    grid: str = "hex",
    angle: float = 0.0,
    shift: Sequence[float] = (0.0, 0.0),
    mirror: bool = False,
    drop: float = 0.1,
    jitter: float = 0.1,
    clr: bool = False,
    random_state: RandomState = 0,
) -> tuple[AnnData, AnnData, np.ndarray]:
    """An RNA section and an adjacent protein section of one simulated tissue, with the truth.

    Section a is :func:`cellweave.sim.simulate_spatial`'s counts with ``n_proteins`` genes
    (the spatially graded genes and the cell-type markers first) renamed to the gene symbols
    of :data:`PROTEIN_PANEL`. Section b keeps a fraction ``1 - drop`` of the spots, moved by
    ``jitter`` spacings (Gaussian) and then by the transform of :func:`perturb_section`
    (mirror, rotation by ``angle`` about the centroid, ``shift``), and measures a protein panel:
    per antibody, ADT-like negative-binomial counts with mean ``background + s * (e /
    mean(e)) ** gamma`` times the spot's own depth, where ``e`` is the gene's true share of
    the spot's expression (the RNA capture depth is not carried over) and ``s``, ``gamma``
    (in [0.6, 1.4]) and ``background`` differ per antibody (a monotone, noisy transform on
    another scale), plus two isotype controls; ``clr=True`` stores CLR-normalized values
    instead of counts.

    Returns
    -------
    ``(rna, protein, truth)``: ``truth`` holds where each spot of b lies in a's frame.
    ``rna.obsm["true_protein"]`` is the noise-free log signal of every antibody at every spot
    of a (DataFrame), ``protein.obs["source_spot"]`` the spot of a each spot of b was cut
    from, ``protein.uns["pairs"]`` the gene of each antibody.
    """
    from ..sim import simulate_spatial

    if not 5 <= n_proteins <= len(PROTEIN_PANEL):
        raise InputError(f"n_proteins must be in [5, {len(PROTEIN_PANEL)}], got {n_proteins}")
    rng = check_random_state(random_state)
    rna, _ = simulate_spatial(
        n_spots=n_spots, grid=grid, n_genes=n_genes, random_state=int(rng.integers(2**31 - 1))
    )
    var = rna.var
    order = [*np.flatnonzero(var["spatially_graded"].to_numpy())]
    order += [*np.flatnonzero(var["marker_of"].notna().to_numpy())]
    order += [i for i in range(rna.n_vars) if i not in set(order)]
    panel = list(PROTEIN_PANEL.items())[:n_proteins]
    names = rna.var_names.to_numpy().astype(object)
    names[order[:n_proteins]] = [gene for gene, _ in panel]
    rna.var_names = names.astype(str)
    genes = [gene for gene, _ in panel]
    true = np.asarray(rna.layers["true_expression"], dtype=np.float64)
    share = true / np.maximum(true.sum(axis=1, keepdims=True), 1e-12)  # RNA depth removed
    expr = share[:, rna.var_names.get_indexer(genes)]
    level = expr / np.maximum(expr.mean(axis=0), 1e-12)
    gamma = rng.uniform(0.6, 1.4, n_proteins)
    scale = np.exp(rng.uniform(np.log(20.0), np.log(400.0), n_proteins))
    background = scale * rng.uniform(0.05, 0.2, n_proteins)
    signal = background + scale * level**gamma
    rna.obsm["true_protein"] = pd.DataFrame(
        np.log(signal), index=rna.obs_names, columns=[name for _, name in panel]
    )
    keep = np.sort(rng.choice(n_spots, max(3, round(n_spots * (1 - drop))), replace=False))
    depth = np.exp(rng.normal(0.0, 0.3, len(keep)))
    mean = np.c_[signal[keep], np.tile(background.min() * np.ones(len(CONTROLS)), (len(keep), 1))]
    mean = mean * depth[:, None]
    counts = rng.negative_binomial(10.0, 10.0 / (10.0 + mean)).astype(np.float32)
    values = _clr(counts) if clr else counts
    protein = AnnData(values, obs=pd.DataFrame(index=rna.obs_names[keep].copy()))
    protein.var_names = [name for _, name in panel] + list(CONTROLS)
    protein.obs["source_spot"] = rna.obs_names[keep].to_numpy()
    protein.uns["pairs"] = {name: gene for gene, name in panel}
    coords = np.asarray(rna.obsm["spatial"], dtype=np.float64)
    truth = coords[keep] + rng.normal(0.0, jitter, size=(len(keep), coords.shape[1]))
    protein.obsm["spatial"] = truth
    moved, _ = perturb_section(protein, angle=angle, shift=shift, mirror=mirror, random_state=rng)
    return rna, moved, truth


def _clr(counts: np.ndarray) -> np.ndarray:
    """Centred log-ratio per spot (Seurat's CLR for ADT): ``log1p(x) - mean(log1p(x))``."""
    logged = np.log1p(counts)
    return (logged - logged.mean(axis=1, keepdims=True)).astype(np.float32)
