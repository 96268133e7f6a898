"""A spatial tissue with known ground truth, and a matched scRNA-seq reference.

The tissue is a set of spots (a hex or square lattice with unit spacing, or uniform random
points at unit density) partitioned into smooth spatial domains. Each domain has its own
cell-type composition; every spot holds a few cells whose types are drawn from that
composition. Expression is negative binomial per cell, summed per spot, then thinned by
technical dropout. The reference is a set of single cells of the same types, measured on a
"platform" that shifts every gene by a fixed log fold change.

Everything that was used to generate the data is returned with it (see
``docs/simulator_spatial.md`` for the list of keys), so methods can be scored against truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._utils import RandomState, check_random_state
from ..errors import InputError
from ._counts import apply_dropout, sample_nb
from .tissue import Tissue, lognormal, simulate_tissue

__all__ = ["GRIDS", "simulate_spatial"]

GRIDS = ("hex", "square", "random")

# Fixed design constants (documented in docs/simulator_spatial.md).
_REF_CONCENTRATION = 5.0  # Dirichlet alpha of the reference's cell-type fractions
_BASE_LOG_SD = 1.0  # sd of the log base expression shared by all types
_MARKER_LOG_FOLD = (math.log(4.0), math.log(12.0))  # over the highest other type
_GRADIENT_LOG_AMPLITUDE = (1.0, 2.0)  # log fold from the centre to the tissue edge
_CHUNK_ENTRIES = 2**22  # entries (rows x genes) sampled at once; bounds peak memory


@dataclass(frozen=True)
class _Program:
    profiles: np.ndarray  # (n_types, n_genes) relative expression, rows sum to 1
    markers: np.ndarray  # (n_types, n_marker_genes) gene indices
    spatial_genes: np.ndarray  # (n_spatial_genes,) gene indices
    amplitude: np.ndarray  # (n_spatial_genes,) log fold at the tissue edge
    direction: np.ndarray  # (n_spatial_genes, 2) unit gradient directions
    centre: np.ndarray  # (2,) tissue centre
    half_extent: np.ndarray  # (n_spatial_genes,) largest |projection| over spots


def simulate_spatial(
    *,
    n_spots: int = 1000,
    grid: str = "hex",
    n_genes: int = 200,
    n_cell_types: int = 6,
    n_domains: int = 4,
    cells_per_spot: float = 8.0,
    library_size: float = 2000.0,
    library_sd: float = 0.3,
    dispersion: float = 5.0,
    dropout: float = 0.3,
    n_ref_cells: int = 2000,
    ref_library_size: float = 5000.0,
    batch_effect: float = 0.5,
    n_marker_genes: int = 5,
    n_spatial_genes: int = 5,
    type_log_sd: float = 0.7,
    random_state: RandomState = 0,
) -> tuple[AnnData, AnnData]:
    """Simulate a spatial tissue and a matched scRNA-seq reference, with ground truth.

    Parameters
    ----------
    n_spots
        Number of spots (or cells, at single-cell resolution).
    grid
        ``"hex"`` (Visium-like), ``"square"`` (ST-like) lattice with unit spacing, or
        ``"random"`` uniform points at unit density.
    n_genes
        Number of genes, shared by both data sets (``gene_0000`` ...).
    n_cell_types
        Number of cell types (``type_0`` ...).
    n_domains
        Number of spatial domains (``domain_0`` ...); at most ``n_spots``.
    cells_per_spot
        Mean number of cells per spot (>= 1); a spot holds ``1 + Poisson(cells_per_spot - 1)``
        cells. ``cells_per_spot=1`` with ``grid="random"`` is single-cell resolution
        (MERFISH-like).
    library_size
        Mean expected total counts per spot.
    library_sd
        sd of the log spot library size (log-normal around ``library_size``, mean-preserving);
        also used for the reference cells.
    dispersion
        Negative-binomial inverse dispersion ``theta`` of every cell's counts.
    dropout
        Probability, in [0, 1), that a spot count is zeroed on top of the NB sampling.
    n_ref_cells
        Number of cells in the reference.
    ref_library_size
        Mean expected total counts per reference cell.
    batch_effect
        sd of the gene-wise log fold shift applied to the reference (the platform effect).
    n_marker_genes
        Marker genes per cell type (disjoint sets), up-regulated 4-12 fold over every other
        type.
    n_spatial_genes
        Genes with a smooth linear expression gradient across the tissue (in every cell
        type), disjoint from the markers.
    type_log_sd
        sd of every gene's cell-type-specific log deviation from the shared base expression
        (beyond the markers): how different cell types are across the whole transcriptome.
    random_state
        Seed or generator; the same seed gives identical output.

    Returns
    -------
    ``(spatial, reference)``. ``spatial.X`` holds observed counts (CSR, float32) with the
    truth in ``layers["counts_full"]``, ``layers["true_expression"]``, ``obs["domain"]``,
    ``obs["n_cells"]``, ``obsm["true_fractions"]`` and ``uns["sim"]``; ``reference.X`` holds
    counts with ``obs["cell_type"]``, ``layers["true_expression"]`` and
    ``uns["sim"]["batch_shift"]``. See ``docs/simulator_spatial.md``.
    """
    # the arguments (the only locals so far), checked, as plain scalars for uns["sim"]
    params = _validate(dict(locals()))
    rng = _check_rng(random_state)
    params["random_state"] = _seed_label(random_state)
    # Independent streams per stage, so that e.g. changing `dropout` leaves counts_full as is.
    rng_tissue, rng_program, rng_counts, rng_dropout, rng_ref = rng.spawn(5)

    tissue = simulate_tissue(params, rng_tissue)
    program = _simulate_program(params, tissue.coords, rng_program)
    true_expr, counts_full, observed = _spot_counts(
        tissue, program, params, rng_counts, rng_dropout
    )
    names = _Names.make(params)
    spatial = _spatial_anndata(tissue, program, params, names, true_expr, counts_full, observed)
    reference = _simulate_reference(program, params, names, rng_ref)
    return spatial, reference


# --------------------------------------------------------------------------- validation


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not _is_int(value):
        raise InputError(
            f"{name} must be an integer, got {value!r}; pass a whole number >= {minimum}"
        )
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}; pass a larger value")
    return int(value)


def _check_real(
    name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool, high_open: bool
) -> float:
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    allowed = f"{lo}{low:g}, {high:g}{hi}"
    if not isinstance(value, int | float | np.integer | np.floating) or isinstance(value, bool):
        raise InputError(f"{name} must be a number in {allowed}, got {value!r}; pass a float")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        raise InputError(f"{name} must be in {allowed}, got {value}; pass a value in that range")
    return value


def _check_rng(random_state: Any) -> np.random.Generator:
    try:
        return check_random_state(random_state)
    except TypeError:
        raise InputError(
            f"random_state must be None, an int or a numpy Generator, got {random_state!r}; "
            "pass an integer seed"
        ) from None


def _seed_label(random_state: RandomState) -> int | str:
    """``random_state`` as h5ad can store it: an int seed as is, else ``"None"`` or
    ``"Generator"``."""
    if _is_int(random_state):
        return int(random_state)
    return "None" if random_state is None else "Generator"


def _validate(kw: Mapping[str, Any]) -> dict[str, Any]:
    """Check every parameter of :func:`simulate_spatial` (by name in ``kw``); return them as
    plain Python scalars (for ``uns``; ``random_state`` is labelled by the caller)."""
    p: dict[str, Any] = {}
    for name in ("n_spots", "n_genes", "n_cell_types", "n_domains", "n_ref_cells"):
        p[name] = _check_int(name, kw[name], 1)
    for name in ("n_marker_genes", "n_spatial_genes"):
        p[name] = _check_int(name, kw[name], 0)
    if not isinstance(kw["grid"], str) or kw["grid"] not in GRIDS:
        raise InputError(f"grid must be one of {', '.join(GRIDS)}, got {kw['grid']!r}; pick one")
    p["grid"] = kw["grid"]
    positive = {"low": 0.0, "low_open": True, "high_open": True}
    non_negative = {"low": 0.0, "low_open": False, "high_open": True}
    p["cells_per_spot"] = _check_real(
        "cells_per_spot", kw["cells_per_spot"], low=1.0, low_open=False, high_open=True
    )
    for name in ("library_size", "ref_library_size", "dispersion"):
        p[name] = _check_real(name, kw[name], **positive)
    for name in ("library_sd", "batch_effect", "type_log_sd"):
        p[name] = _check_real(name, kw[name], **non_negative)
    p["dropout"] = _check_real(
        "dropout", kw["dropout"], low=0.0, high=1.0, low_open=False, high_open=True
    )
    if p["n_domains"] > p["n_spots"]:
        raise InputError(
            f"n_domains ({p['n_domains']}) exceeds n_spots ({p['n_spots']}); every domain needs "
            "a spot, so lower n_domains or raise n_spots"
        )
    needed = p["n_cell_types"] * p["n_marker_genes"] + p["n_spatial_genes"]
    if needed > p["n_genes"]:
        raise InputError(
            f"n_cell_types * n_marker_genes + n_spatial_genes = {needed} exceeds n_genes "
            f"({p['n_genes']}); markers and spatial genes are disjoint, so raise n_genes or "
            "lower n_marker_genes / n_spatial_genes"
        )
    return p


# --------------------------------------------------------------------------- expression


def _simulate_program(
    params: dict[str, Any], coords: np.ndarray, rng: np.random.Generator
) -> _Program:
    """Type profiles with markers, and the spatial gradient genes."""
    n_genes, n_types = params["n_genes"], params["n_cell_types"]
    n_markers, n_grad = params["n_marker_genes"], params["n_spatial_genes"]
    base = rng.normal(0.0, _BASE_LOG_SD, size=n_genes)
    log_profiles = base + rng.normal(0.0, params["type_log_sd"], size=(n_types, n_genes))
    order = rng.permutation(n_genes)
    markers = np.sort(order[: n_types * n_markers].reshape(n_types, n_markers), axis=1)
    spatial_genes = np.sort(order[n_types * n_markers : n_types * n_markers + n_grad])
    fold = rng.uniform(*_MARKER_LOG_FOLD, size=(n_types, n_markers))
    for k in range(n_types):
        others = np.delete(log_profiles[:, markers[k]], k, axis=0)
        top = others.max(axis=0) if others.size else log_profiles[k, markers[k]]
        log_profiles[k, markers[k]] = top + fold[k]
    profiles = np.exp(log_profiles - log_profiles.max(axis=1, keepdims=True))
    profiles /= profiles.sum(axis=1, keepdims=True)

    angle = rng.uniform(0.0, 2.0 * math.pi, size=n_grad)
    direction = np.column_stack([np.cos(angle), np.sin(angle)])
    amplitude = rng.uniform(*_GRADIENT_LOG_AMPLITUDE, size=n_grad)
    centre = coords.mean(axis=0)
    half = np.abs((coords - centre) @ direction.T).max(axis=0) if n_grad else np.zeros(0)
    half = np.where(half > 0, half, 1.0)
    return _Program(profiles, markers, spatial_genes, amplitude, direction, centre, half)


def _gradient(program: _Program, coords: np.ndarray, n_genes: int) -> np.ndarray:
    """Multiplicative expression factor per spot and gene (1 outside the gradient genes)."""
    factor = np.ones((coords.shape[0], n_genes))
    if program.spatial_genes.size:
        proj = (coords - program.centre) @ program.direction.T / program.half_extent
        factor[:, program.spatial_genes] = np.exp(program.amplitude * proj)
    return factor


def _spot_counts(
    tissue: Tissue,
    program: _Program,
    params: dict[str, Any],
    rng_counts: np.random.Generator,
    rng_dropout: np.random.Generator,
) -> tuple[np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    """Expected expression, full counts and observed counts per spot, in chunks of spots.

    Every cell of type ``k`` in spot ``s`` has NB counts with mean
    ``L_s / n_s * p_k(x_s)`` (``p_k(x)``: the type profile times the gradient at ``x``,
    renormalised), so the spot's expected total is ``L_s``. The ``n`` cells of one type in a
    spot are i.i.d. gamma-Poisson with the same mean ``mu``; their sum is exactly
    NB(mean ``n * mu``, theta ``n * theta``), so we draw one value per (spot, type) group.
    """
    n_spots, n_genes = params["n_spots"], params["n_genes"]
    theta, dropout = params["dispersion"], params["dropout"]
    groups_per_spot = (tissue.type_counts > 0).sum(axis=1)
    chunk = max(1, int(_CHUNK_ENTRIES / (n_genes * groups_per_spot.mean())))
    true_expr = np.empty((n_spots, n_genes), dtype=np.float32)
    full, observed = _CsrRows(n_spots, n_genes), _CsrRows(n_spots, n_genes)
    for start in range(0, n_spots, chunk):
        sl = slice(start, min(start + chunk, n_spots))
        gradient = _gradient(program, tissue.coords[sl], n_genes)
        norm = gradient @ program.profiles.T  # (spots, types): renormaliser of p_k(x)
        share = tissue.library_size[sl, None] / tissue.n_cells[sl, None] / norm  # per cell
        counts_st = tissue.type_counts[sl]
        true_expr[sl] = gradient * ((counts_st * share) @ program.profiles)
        spot, kind = np.nonzero(counts_st)  # groups, sorted by spot
        n_group = counts_st[spot, kind]
        mean = (n_group * share[spot, kind])[:, None] * gradient[spot] * program.profiles[kind]
        group_counts = sample_nb(mean, (n_group * theta)[:, None], rng_counts)
        starts = np.flatnonzero(np.r_[True, spot[1:] != spot[:-1]])
        counts = np.add.reduceat(group_counts, starts, axis=0)
        kept, _ = apply_dropout(counts, dropout, rng_dropout)
        full.append(counts)
        observed.append(kept)
    return true_expr, full.build(), observed.build()


class _CsrRows:
    """Builds a CSR matrix from dense row blocks appended in order.

    Data and column indices go straight into two growing buffers (sized from the density of
    the first block, grown by half when full, trimmed in place at the end), so the peak
    memory stays close to the size of the result, without many small pieces to stack.
    """

    def __init__(self, n_rows: int, n_cols: int) -> None:
        self.shape = (n_rows, n_cols)
        self.row_nnz = np.zeros(n_rows, dtype=np.int64)
        self.data = np.empty(0, dtype=np.float32)
        self.indices = np.empty(0, dtype=np.int32)
        self.nnz = self.row = 0

    def append(self, block: np.ndarray) -> None:
        rows, cols = np.nonzero(block)
        end = self.nnz + rows.size
        if end > self.data.size:
            if self.row == 0:  # first block: guess the total from its density
                capacity = int(rows.size / block.shape[0] * self.shape[0] * 1.05) + 1024
            else:
                capacity = int(self.data.size * 1.5)
            self._resize(max(end, capacity))
        self.data[self.nnz : end] = block[rows, cols]
        self.indices[self.nnz : end] = cols
        self.row_nnz[self.row : self.row + block.shape[0]] = np.bincount(
            rows, minlength=block.shape[0]
        )
        self.nnz, self.row = end, self.row + block.shape[0]

    def _resize(self, size: int) -> None:
        # In-place (realloc): both buffers are owned by this builder and never shared before
        # build(), so no reference can see the move.
        self.data.resize(size, refcheck=False)
        self.indices.resize(size, refcheck=False)

    def build(self) -> sp.csr_matrix:
        self._resize(self.nnz)
        indptr = np.concatenate([[0], np.cumsum(self.row_nnz)])
        if self.nnz < np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        return sp.csr_matrix((self.data, self.indices, indptr), shape=self.shape)


# --------------------------------------------------------------------------- assembly


@dataclass(frozen=True)
class _Names:
    spots: pd.Index
    genes: pd.Index
    types: list[str]
    domains: list[str]

    @classmethod
    def make(cls, params: dict[str, Any]) -> _Names:
        return cls(
            spots=_labels("spot", params["n_spots"]),
            genes=_labels("gene", params["n_genes"]),
            types=list(_labels("type", params["n_cell_types"], width=1)),
            domains=list(_labels("domain", params["n_domains"], width=1)),
        )


def _labels(prefix: str, n: int, width: int = 4) -> pd.Index:
    width = max(width, len(str(n - 1)))
    return pd.Index([f"{prefix}_{i:0{width}d}" for i in range(n)])


def _categorical(codes: np.ndarray, categories: list[str] | pd.Index) -> pd.Categorical:
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int64), categories=categories)


def _gene_annotation(program: _Program, names: _Names) -> pd.DataFrame:
    marker_of = np.full(len(names.genes), -1)
    for k, genes in enumerate(program.markers):
        marker_of[genes] = k
    graded = np.zeros(len(names.genes), dtype=bool)
    graded[program.spatial_genes] = True
    return pd.DataFrame(
        {"marker_of": _categorical(marker_of, names.types), "spatially_graded": graded},
        index=names.genes,
    )


def _common_uns(program: _Program, params: dict[str, Any], names: _Names) -> dict[str, Any]:
    return {
        "params": dict(params),
        "marker_genes": {
            t: np.asarray(names.genes[program.markers[k]], dtype=str)
            for k, t in enumerate(names.types)
        },
    }


def _spatial_anndata(
    tissue: Tissue,
    program: _Program,
    params: dict[str, Any],
    names: _Names,
    true_expr: np.ndarray,
    counts_full: sp.csr_matrix,
    observed: sp.csr_matrix,
) -> AnnData:
    obs = pd.DataFrame(
        {
            "domain": _categorical(tissue.domain, names.domains),
            "n_cells": tissue.n_cells.astype(np.int64),
            "library_size": tissue.library_size,
            "batch": pd.Categorical(["spatial"] * params["n_spots"]),
        },
        index=names.spots,
    )
    adata = AnnData(X=observed, obs=obs, var=_gene_annotation(program, names))
    adata.layers["counts_full"] = counts_full
    adata.layers["true_expression"] = true_expr
    adata.obsm["spatial"] = tissue.coords
    adata.obsm["true_fractions"] = pd.DataFrame(
        tissue.type_counts / tissue.n_cells[:, None], index=names.spots, columns=names.types
    )
    n_types = params["n_cell_types"]
    cell_spot = np.repeat(np.arange(params["n_spots"]), tissue.n_cells)
    cell_type = np.repeat(
        np.tile(np.arange(n_types), params["n_spots"]), tissue.type_counts.ravel()
    )
    uns = _common_uns(program, params, names)
    uns["cell_positions"] = pd.DataFrame(
        {
            "x": tissue.cell_xy[:, 0].astype(np.float32),
            "y": tissue.cell_xy[:, 1].astype(np.float32),
            "spot": _categorical(cell_spot, names.spots),
            "cell_type": _categorical(cell_type, names.types),
        }
    )
    uns["type_profiles"] = pd.DataFrame(program.profiles, index=names.types, columns=names.genes)
    uns["domain_composition"] = pd.DataFrame(
        tissue.composition, index=names.domains, columns=names.types
    )
    uns["spatial_genes"] = pd.DataFrame(
        {
            "amplitude": program.amplitude,
            "direction_x": program.direction[:, 0],
            "direction_y": program.direction[:, 1],
            "half_extent": program.half_extent,
        },
        index=names.genes[program.spatial_genes],
    )
    uns["tissue_centre"] = program.centre
    adata.uns["sim"] = uns
    return adata


# --------------------------------------------------------------------------- reference


def _simulate_reference(
    program: _Program, params: dict[str, Any], names: _Names, rng: np.random.Generator
) -> AnnData:
    """Single cells of the same types, with a gene-wise platform shift and no dropout."""
    n_cells, n_genes, n_types = params["n_ref_cells"], params["n_genes"], params["n_cell_types"]
    shift = rng.normal(0.0, params["batch_effect"], size=n_genes)
    profiles = program.profiles * np.exp(shift)
    profiles /= profiles.sum(axis=1, keepdims=True)
    fractions = rng.dirichlet(np.full(n_types, _REF_CONCENTRATION))
    cell_type = rng.choice(n_types, size=n_cells, p=fractions)
    library = lognormal(params["ref_library_size"], params["library_sd"], n_cells, rng)
    true_expr = np.empty((n_cells, n_genes), dtype=np.float32)
    counts = _CsrRows(n_cells, n_genes)
    chunk = max(1, _CHUNK_ENTRIES // n_genes)
    for start in range(0, n_cells, chunk):
        sl = slice(start, min(start + chunk, n_cells))
        mean = library[sl, None] * profiles[cell_type[sl]]
        true_expr[sl] = mean
        counts.append(sample_nb(mean, params["dispersion"], rng))
    obs = pd.DataFrame(
        {
            "cell_type": _categorical(cell_type, names.types),
            "library_size": library,
            "batch": pd.Categorical(["reference"] * n_cells),
        },
        index=_labels("cell", n_cells),
    )
    adata = AnnData(X=counts.build(), obs=obs, var=_gene_annotation(program, names))
    adata.layers["true_expression"] = true_expr
    uns = _common_uns(program, params, names)
    uns["batch_shift"] = shift.astype(np.float32)
    uns["type_profiles"] = pd.DataFrame(profiles, index=names.types, columns=names.genes)
    uns["type_fractions"] = pd.DataFrame({"fraction": fractions}, index=names.types)
    adata.uns["sim"] = uns
    return adata
