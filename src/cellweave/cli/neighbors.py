"""``cellweave neighbors``: build the spatial neighbour graph of a file."""

from __future__ import annotations

from pathlib import Path

import click

from .. import io
from ._common import (
    Number,
    check_outputs,
    console,
    coords_option,
    out_option,
    path_option,
    print_table,
    spatial_key_option,
    use_agg_backend,
)
from ._inputs import read_input, require_inputs


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@out_option("Output .h5ad (the input is never modified).", required=True, short=False)
@click.option(
    "--method",
    type=click.Choice(["auto", "grid", "knn", "radius"]),
    default="auto",
    show_default=True,
    help="auto: grid rings on ST/Visium arrays, else kNN.",
)
@click.option(
    "--max-order",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Rings of neighbours to keep on grids (1: adjacent spots, 2: next ring).",
)
@click.option("--n-neighbors", type=click.IntRange(min=1), default=6, show_default=True)
@click.option(
    "--radius",
    type=Number(min=0.0, min_open=True),
    default=None,
    help="Radius for --method radius.",
)
@spatial_key_option
@coords_option()
@path_option("--plot", "Also save a PNG of the spots coloured by their number of neighbours.")
def neighbors(
    path: Path,
    out: Path,
    spatial_key: str,
    coords: Path | None,
    plot: Path | None,
    overwrite: bool,
    **graph,
) -> None:
    """Spatial neighbour graph (kNN, radius, or grid rings with neighbour order) written to
    obsp['spatial_connectivities'|'spatial_distances'|'spatial_order']."""
    # graph: method, max_order, n_neighbors, radius (spatial_neighbors' keywords)
    require_inputs(path, coords)
    check_outputs(
        {"--out": (out, "h5ad"), "--plot": (plot, "figure")}, inputs=[path], overwrite=overwrite
    )
    adata = read_input(path, reader="spatial", coords=coords, spatial_key=spatial_key)
    from ..graph import spatial_neighbors

    spatial_neighbors(adata, spatial_key=spatial_key, **graph)
    params = adata.uns["spatial_neighbors"]["params"]
    order = adata.obsp["spatial_order"]
    rows = [(k, v) for k, v in params.items()]
    for k in range(1, int(order.max()) + 1 if order.nnz else 1):
        per_spot = (order == k).sum(axis=1).A1
        rows.append((f"order-{k} neighbours per spot (median)", float(_median(per_spot))))
    print_table(f"spatial graph of {path.name}", rows, columns=("parameter", "value"))
    io.write(adata, out, overwrite=overwrite)
    console.print(f"wrote {out}")
    if plot is not None:
        use_agg_backend()
        from ..plotting import spatial_graph

        spatial_graph(adata, spatial_key=spatial_key, save=plot)
        console.print(f"wrote {plot}")


def _median(values) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else 0.0
