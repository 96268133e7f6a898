"""``cellweave inspect``: read a file, report what is in it, and run the input checks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._common import coords_option, layer_option, print_table, spatial_key_option
from ._inputs import read_input, require_inputs

if TYPE_CHECKING:
    from anndata import AnnData


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--counts",
    "require_counts",
    is_flag=True,
    help="Fail (exit 2) unless the matrix holds raw counts.",
)
@click.option(
    "--spatial",
    "require_spatial",
    is_flag=True,
    help="Fail (exit 2) unless spatial coordinates are present.",
)
@spatial_key_option
@coords_option()
@layer_option("Check this layer instead of X.")
def inspect(
    path: Path,
    require_counts: bool,
    require_spatial: bool,
    spatial_key: str,
    coords: Path | None,
    layer: str | None,
) -> None:
    """Summarise an .h5ad/.h5mu/10x/CSV file or a Space Ranger outs/ folder and check it
    (NaN/inf, empty genes or cells, duplicate names, counts, spatial coordinates)."""
    from .. import validate

    require_inputs(path, coords)
    data = read_input(path, reader="any", coords=coords, spatial_key=spatial_key)
    tables = data.mod.items() if hasattr(data, "mod") else [("data", data)]
    for name, adata in tables:
        rows = _summary(adata, layer=layer, spatial_key=spatial_key)
        print_table(f"{path.name}: {name}", rows, columns=("check", "result"))
        validate.check_adata(
            adata,
            layer=layer,
            require_counts=require_counts,
            spatial_key=spatial_key if require_spatial else None,
            allow_degenerate=False,
            name=f"{path.name}:{name}",
        )


def _summary(adata: AnnData, *, layer: str | None, spatial_key: str) -> list[tuple[str, str]]:
    import numpy as np
    from scipy import sparse

    from .. import validate

    X = validate.get_matrix(adata, layer=layer)
    values = X.data if sparse.issparse(X) else np.asarray(X)
    n_bad = int(np.size(values) - np.isfinite(values).sum()) if values.dtype.kind == "f" else 0
    cells_with_counts, genes_with_counts = validate.nonzero_mask(X)
    has_spatial = spatial_key in adata.obsm
    return [
        ("shape", f"{adata.n_obs} obs x {adata.n_vars} vars"),
        ("matrix", f"{'sparse' if sparse.issparse(X) else 'dense'} {X.dtype}"),
        ("raw counts", "yes" if n_bad == 0 and validate.is_counts(X) else "no"),
        ("NaN/inf values", str(n_bad)),
        ("all-zero genes", str(int((~genes_with_counts).sum()))),
        ("all-zero cells", str(int((~cells_with_counts).sum()))),
        ("unique obs names", str(adata.obs_names.is_unique)),
        ("unique var names", str(adata.var_names.is_unique)),
        (
            f"obsm['{spatial_key}']",
            f"{adata.obsm[spatial_key].shape[1]}-D" if has_spatial else "absent",
        ),
    ]
