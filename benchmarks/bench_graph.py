"""Time cellweave.graph on large synthetic spot arrays and point clouds.

Usage::

    python benchmarks/bench_graph.py [--n 100000] [--repeats 3] [--out benchmarks/results/graph.md]

Cases: kNN (k=6), radius graph, lattice detection and order-2 grid rings on a hexagonal
(Visium-like, 3 % jitter) and a square (legacy-ST-like) lattice of ~n spots, the full
``spatial_neighbors`` call (auto, order 2) on the hex lattice, and kNN on n uniform random
points. Writes a markdown table (best and median wall time of ``--repeats`` runs) with the
machine, the library versions and the command line.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np

from _report import header
from cellweave.graph import (
    detect_grid,
    grid_rings,
    knn_graph,
    radius_graph,
    spatial_neighbors,
)


def hex_lattice(n: int, spacing: float = 100.0, jitter: float = 0.03, seed: int = 0):
    """About ``n`` spots of a hexagonal lattice (rows offset by half a spacing), jittered."""
    ncols = int(np.ceil(np.sqrt(n / (np.sqrt(3) / 2))))
    nrows = int(np.ceil(n / ncols))
    row, col = np.divmod(np.arange(nrows * ncols)[:n], ncols)
    xy = np.column_stack([col + 0.5 * (row % 2), row * np.sqrt(3) / 2]) * spacing
    return xy + np.random.default_rng(seed).normal(scale=jitter * spacing, size=xy.shape)


def square_lattice(n: int, spacing: float = 1.0, jitter: float = 0.03, seed: int = 0):
    """About ``n`` spots of a square lattice, jittered."""
    side = int(np.ceil(np.sqrt(n)))
    row, col = np.divmod(np.arange(n), side)
    xy = np.column_stack([col, row]).astype(float) * spacing
    return xy + np.random.default_rng(seed).normal(scale=jitter * spacing, size=xy.shape)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Best and median wall time (s) of ``repeats`` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times)), result


def describe(result) -> str:
    """A short size note for the table: nnz per row of the (first) sparse result."""
    if isinstance(result, tuple):
        result = result[0]
    if hasattr(result, "kind"):
        return f"kind={result.kind}, spacing={result.spacing:.3g}"
    if isinstance(result, ad.AnnData):
        result = result.obsp["spatial_connectivities"]
    return f"{result.nnz / result.shape[0]:.2f} nnz/row"


def cases(n: int) -> list[tuple[str, Callable[[], object]]]:
    hexa = hex_lattice(n)
    square = square_lattice(n)
    cloud = np.random.default_rng(1).uniform(size=(n, 2))
    hex_adata = ad.AnnData(obs={"i": np.arange(len(hexa))}, obsm={"spatial": hexa})
    cloud_radius = float(np.sqrt(6 / (np.pi * n)))  # ~6 neighbours on average
    return [
        ("hex: knn k=6", lambda: knn_graph(hexa, n_neighbors=6)),
        ("hex: radius 1.5 x spacing", lambda: radius_graph(hexa, radius=150.0)),
        ("hex: detect_grid", lambda: detect_grid(hexa)),
        ("hex: grid_rings order 2", lambda: grid_rings(hexa, max_order=2)),
        (
            "hex: spatial_neighbors auto, order 2",
            lambda: spatial_neighbors(hex_adata, max_order=2, copy=True),
        ),
        ("square: knn k=6", lambda: knn_graph(square, n_neighbors=6)),
        ("square: radius 1.5 x spacing", lambda: radius_graph(square, radius=1.5)),
        ("square: detect_grid", lambda: detect_grid(square)),
        ("square: grid_rings order 2", lambda: grid_rings(square, max_order=2)),
        ("uniform: knn k=6", lambda: knn_graph(cloud, n_neighbors=6)),
        (f"uniform: radius {cloud_radius:.2g}", lambda: radius_graph(cloud, radius=cloud_radius)),
    ]


def report(rows: list[tuple[str, float, float, str]], args: argparse.Namespace) -> str:
    lines = [
        *header("cellweave.graph benchmark", ("numpy", "scipy", "scikit-learn", "anndata")),
        f"- n = {args.n} points per case, {args.repeats} repeats (best and median wall time); "
        "lattices jittered by 3 % of the spacing",
        "",
        "| case | best (s) | median (s) | result |",
        "|---|---:|---:|---|",
    ]
    lines += [
        f"| {name} | {best:.3f} | {median:.3f} | {note} |" for name, best, median, note in rows
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="points per case")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/graph.md"))
    args = parser.parse_args(argv)
    rows = []
    for name, fn in cases(args.n):
        best, median, result = timed(fn, args.repeats)
        rows.append((name, best, median, describe(result)))
        print(f"{name:40s} best {best:7.3f} s  median {median:7.3f} s  {rows[-1][3]}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(rows, args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
