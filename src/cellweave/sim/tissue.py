"""The simulated tissue: spots on a lattice, smooth spatial domains, cells in spots."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..graph import nearest_neighbors

__all__ = ["Tissue", "lognormal", "simulate_tissue"]

# Fixed design constants (documented in docs/simulator_spatial.md).
_SPOT_RADIUS = 0.5  # cells lie within this distance of their spot centre (spot spacing is 1)
_DOMAIN_CONCENTRATION = 1.0  # Dirichlet alpha of each domain's cell-type composition
_WARP_MODES = 4  # sine modes of the smooth warp that makes domain borders irregular


@dataclass(frozen=True)
class Tissue:
    """Spots, domains and cells of a simulated tissue (all arrays, in spot order)."""

    coords: np.ndarray  # (n_spots, 2) spot centres
    domain: np.ndarray  # (n_spots,) domain codes
    composition: np.ndarray  # (n_domains, n_types) cell-type composition per domain
    n_cells: np.ndarray  # (n_spots,) cells per spot
    type_counts: np.ndarray  # (n_spots, n_types) cells of each type per spot
    cell_xy: np.ndarray  # (n_cells_total, 2) cell positions, ordered by spot then type
    library_size: np.ndarray  # (n_spots,) expected total counts per spot


def simulate_tissue(params: dict[str, Any], rng: np.random.Generator) -> Tissue:
    """Spots, domains, cells per spot and their types and positions, library sizes."""
    n_spots, n_types = params["n_spots"], params["n_cell_types"]
    coords = _spot_grid(n_spots, params["grid"], rng)
    domain = _assign_domains(coords, params["n_domains"], rng)
    composition = rng.dirichlet(np.full(n_types, _DOMAIN_CONCENTRATION), size=params["n_domains"])
    n_cells = 1 + rng.poisson(params["cells_per_spot"] - 1.0, size=n_spots)
    # Cell types of a spot's cells are i.i.d. from its domain's composition: a multinomial.
    type_counts = rng.multinomial(n_cells, composition[domain])
    cell_spot = np.repeat(np.arange(n_spots), n_cells)
    cell_xy = coords[cell_spot] + _jitter_in_disc(cell_spot.size, _SPOT_RADIUS, rng)
    library = lognormal(params["library_size"], params["library_sd"], n_spots, rng)
    return Tissue(coords, domain, composition, n_cells, type_counts, cell_xy, library)


def _spot_grid(n: int, grid: str, rng: np.random.Generator) -> np.ndarray:
    """Spot centres filling a roughly square region, unit spacing (or unit density)."""
    if grid == "random":
        return rng.uniform(0.0, math.sqrt(n), size=(n, 2))
    row_height = math.sqrt(3.0) / 2.0 if grid == "hex" else 1.0
    n_cols = max(1, math.ceil(math.sqrt(n * row_height)))
    row, col = np.divmod(np.arange(n), n_cols)
    x = col + (0.5 * (row % 2) if grid == "hex" else 0.0)
    return np.column_stack([x, row * row_height]).astype(np.float64)


def _assign_domains(coords: np.ndarray, n_domains: int, rng: np.random.Generator) -> np.ndarray:
    """Voronoi regions of well-spread centres, in smoothly warped coordinates.

    The warp (a few random sine modes with a wavelength of about two domain widths) makes
    the borders irregular while keeping domains smooth. Centres are spread by farthest-point
    sampling and a few k-means steps on a subsample of spots, and each is a spot, so every
    domain holds at least its centre spot.
    """
    n = coords.shape[0]
    extent = np.ptp(coords, axis=0) if n > 1 else np.zeros(2)
    scale = max(math.sqrt(float(np.prod(extent)) / n_domains), float(extent.max()) / n_domains, 1.0)
    angle = rng.uniform(0.0, 2.0 * math.pi, size=(2, _WARP_MODES))
    phase = rng.uniform(0.0, 2.0 * math.pi, size=(2, _WARP_MODES))
    freq = math.pi / scale
    warped = coords.copy()
    for axis in range(2):
        wave = freq * np.stack([np.cos(angle[axis]), np.sin(angle[axis])])  # (2, modes)
        warped[:, axis] += (
            0.25 * scale / math.sqrt(_WARP_MODES) * np.sin(coords @ wave + phase[axis]).sum(axis=1)
        )
    candidates = warped[rng.choice(n, size=min(n, 50 * n_domains), replace=False)]
    centres = _lloyd(candidates, candidates[_farthest_points(candidates, n_domains)])
    return nearest_neighbors(centres, 1, query=warped)[1][:, 0].astype(np.int64)


def _farthest_points(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` points chosen greedily to be far apart (starting from the first)."""
    chosen = [0]
    dist = np.linalg.norm(points - points[0], axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return np.asarray(chosen)


def _lloyd(points: np.ndarray, centres: np.ndarray, n_iter: int = 10) -> np.ndarray:
    """A few k-means steps on ``points`` (for domains of similar size), then each centre is
    moved onto its nearest point so that no domain is empty; falls back to the initial
    centres (which are points) if two centres would land on the same point."""
    moved = centres.copy()
    for _ in range(n_iter):
        label = nearest_neighbors(moved, 1, query=points)[1][:, 0]
        size = np.bincount(label, minlength=moved.shape[0])
        for axis in range(2):
            total = np.bincount(label, weights=points[:, axis], minlength=moved.shape[0])
            moved[:, axis] = np.where(size > 0, total / np.maximum(size, 1), moved[:, axis])
    snapped = nearest_neighbors(points, 1, query=moved)[1][:, 0]
    return points[snapped] if np.unique(snapped).size == snapped.size else centres


def _jitter_in_disc(n: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` offsets uniform in a disc of the given radius."""
    r = radius * np.sqrt(rng.random(n))
    theta = rng.uniform(0.0, 2.0 * math.pi, size=n)
    return np.column_stack([r * np.cos(theta), r * np.sin(theta)])


def lognormal(mean: float, sd: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Log-normal values with the given arithmetic mean and log-scale sd."""
    return mean * np.exp(rng.normal(-0.5 * sd**2, sd, size=n))
