"""``cellweave demo``: every capability on simulated data with ground truth.

Each section simulates or reuses data, runs one capability, adds rows to the summary table
and saves a PNG. Sections are listed in ``SECTIONS``; capabilities add theirs as they land.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from .. import io
from .._progress import track
from ._common import check_output, console, print_table, seed_option, use_agg_backend

Row = tuple[str, str, object]


@dataclass
class DemoContext:
    """What the sections share: the output folder, sizes, seed and simulated data."""

    out: Path
    n_spots: int
    n_cells: int
    random_state: int
    data: dict = field(default_factory=dict)


def section_spatial_data(ctx: DemoContext) -> list[Row]:
    """Simulated tissue + reference, spatial graph, and how far raw spots are from truth."""
    from ..graph import spatial_neighbors
    from ..metrics import gene_scores
    from ..plotting import spatial as plot_spatial
    from ..pp import log_normalize
    from ..sim import simulate_spatial

    spatial, reference = simulate_spatial(
        n_spots=ctx.n_spots, grid="hex", random_state=ctx.random_state
    )
    ctx.data["spatial"], ctx.data["reference"] = spatial, reference
    io.write(spatial, ctx.out / "spatial.h5ad", overwrite=True)
    io.write(reference, ctx.out / "reference.h5ad", overwrite=True)

    spatial_neighbors(spatial, method="auto", max_order=2)
    params = spatial.uns["spatial_neighbors"]["params"]
    order = spatial.obsp["spatial_order"]
    ring = {k: float(np.median((order == k).sum(axis=1).A1)) for k in (1, 2)}

    observed = log_normalize(spatial.X).toarray()
    truth = log_normalize(spatial.layers["true_expression"])
    scores = gene_scores(truth, observed, genes=list(spatial.var_names))
    sparsity = 1.0 - spatial.X.nnz / np.prod(spatial.shape)

    fractions = spatial.obsm["true_fractions"]
    top_types = list(fractions.columns[:2])
    gene = str(scores["PCC"].idxmax())
    plot_spatial(
        spatial,
        color=["domain", *[f"true_fractions:{t}" for t in top_types]],
        title=["domain", *[f"true fraction: {t}" for t in top_types]],
        save=ctx.out / "spatial_truth.png",
    )
    column = spatial.var_names.get_loc(gene)
    _plot_maps(
        spatial,
        [
            (f"{gene} observed", f"{gene}: observed (log-normalized)", observed[:, column]),
            (f"{gene} truth", f"{gene}: ground truth", truth[:, column]),
        ],
        ctx.out / "gene_observed_vs_truth.png",
    )
    return [
        ("data", "spatial spots x genes", f"{spatial.n_obs} x {spatial.n_vars}"),
        ("data", "reference cells (with batch effect)", reference.n_obs),
        ("data", "zeros in observed spots", f"{sparsity:.1%}"),
        (
            "graph",
            "lattice detected",
            f"{params.get('grid')} (spacing {params.get('spacing', 0):.2f})",
        ),
        ("graph", "order-1 / order-2 neighbours (median)", f"{ring[1]:.0f} / {ring[2]:.0f}"),
        ("no imputation", "median per-gene PCC vs truth", float(scores["PCC"].median())),
        ("no imputation", "median per-gene SSIM vs truth", float(scores["SSIM"].median())),
    ]


def section_mosaic_data(ctx: DemoContext) -> list[Row]:
    """Simulated RNA/ATAC mosaic; how much batch effect a naive embedding keeps."""
    from ..metrics import integration_scores
    from ..plotting import embedding
    from ..pp import log_normalize, pca
    from ..sim import simulate_mosaic

    mdata = simulate_mosaic(n_cells=ctx.n_cells, random_state=ctx.random_state)
    ctx.data["mosaic"] = mdata
    io.write(mdata, ctx.out / "mosaic.h5mu", overwrite=True)

    rna = mdata.mod["rna"]
    obs = mdata.obs.loc[rna.obs_names]
    naive = pca(log_normalize(rna.X), n_comps=20, random_state=ctx.random_state)
    truth = mdata.obsm["true_latent"][mdata.obs_names.get_indexer(rna.obs_names)]
    labels, batches = obs["cell_type"].to_numpy(), obs["batch"].to_numpy()
    naive_scores = integration_scores(naive, labels, batches)
    truth_scores = integration_scores(truth, labels, batches)
    embedding(
        naive,
        color={"cell type": labels, "batch": batches},
        palette=_mosaic_palette(mdata),
        title="RNA PCA before integration",
        save=ctx.out / "mosaic_pca.png",
    )
    per_batch = mdata.obs["batch"].value_counts().sort_index()
    rows: list[Row] = [
        ("data", "mosaic cells per batch", ", ".join(f"{b} {n}" for b, n in per_batch.items())),
        (
            "data",
            "mosaic modalities",
            ", ".join(f"{m} {a.n_obs}x{a.n_vars}" for m, a in mdata.mod.items()),
        ),
    ]
    for name, scores in (
        ("RNA PCA (no integration)", naive_scores),
        ("true latent (upper bound)", truth_scores),
    ):
        rows.append(
            (
                name,
                "bio conservation / batch correction",
                f"{scores['bio_conservation']:.3f} / {scores['batch_correction']:.3f}",
            )
        )
    return rows


def section_impute(ctx: DemoContext) -> list[Row]:
    """Imputation on the simulated tissue: held-out molecules and error to the truth."""
    from ..impute import evaluate, impute
    from ..plotting import informative_gene, metric_bars
    from ..pp import log_normalize
    from ..sim import simulate_spatial

    # sparse counts without extra dropout: dropout zeroes would be shared by both molecule
    # halves of the protocol (see docs/impute.md)
    spatial, _ = simulate_spatial(
        n_spots=ctx.n_spots,
        dropout=0.0,
        library_size=500.0,
        n_ref_cells=10,
        random_state=ctx.random_state,
    )
    methods = ["raw", "gene_mean", "rings", "diffusion", "nmf", "auto"]
    result = evaluate(
        spatial,
        methods=methods,
        seeds=[ctx.random_state],
        truth_layer="true_expression",
        masked_fraction=None,
    )
    impute(spatial, method="auto", random_state=ctx.random_state)
    table = result.table.sort_values("truth_log_rmse")
    gene = informative_gene(spatial, layer="imputed")
    column = spatial.var_names.get_loc(gene)
    raw = log_normalize(spatial.X)[:, column].toarray().ravel()
    true = log_normalize(spatial.layers["true_expression"])[:, column]
    _plot_maps(
        spatial,
        [
            (f"{gene} raw", f"{gene}: raw", raw),
            (f"{gene} imputed", f"{gene}: imputed (auto)", spatial.layers["imputed"][:, column]),
            (f"{gene} true", f"{gene}: ground truth", true),
        ],
        ctx.out / "impute_gene.png",
    )
    plot_metric = result.per_seed.set_index("method")[["deviance", "truth_log_rmse"]].rename(
        columns={"deviance": "held-out deviance", "truth_log_rmse": "error to truth"}
    )
    metric_bars(
        plot_metric,
        reference="raw",
        title="imputation, relative to the raw counts (lower is better)",
        save=ctx.out / "impute_scores.png",
    )
    return [
        (
            f"impute: {name}",
            "held-out deviance / error to truth",
            f"{table.loc[name, 'deviance']:.3f} / {table.loc[name, 'truth_log_rmse']:.3f}",
        )
        for name in table.index
    ]


def section_mapping(ctx: DemoContext) -> list[Row]:
    """Map the reference onto the tissue: held-out genes predicted, cell-type fractions."""
    from ..mapping import cell_type_fractions, map_cells, project_genes
    from ..metrics import fraction_scores, gene_scores
    from ..pp import log_normalize

    spatial, reference = ctx.data["spatial"], ctx.data["reference"]
    rng = np.random.default_rng(ctx.random_state)
    held_out = list(rng.choice(spatial.var_names, size=spatial.n_vars // 5, replace=False))
    panel = spatial[:, ~spatial.var_names.isin(held_out)].copy()
    mapping = map_cells(reference, panel, random_state=ctx.random_state)
    predicted = project_genes(mapping, reference, genes=held_out, adata_sp=panel, key_added=None)
    # fractions of spots that mix cells: "auto" with a cell_type_key runs the library's
    # fractions default (mapping.FRACTIONS_METHOD on raw counts, the measured best,
    # benchmarks/results/mapping.md), as `cellweave map --cell-type-key` does
    deconvolution = map_cells(
        reference,
        panel,
        method="auto",
        cell_type_key="cell_type",
        random_state=ctx.random_state,
        key_added="mapping_fractions",
    )
    truth = log_normalize(spatial[:, held_out].layers["true_expression"])
    pred = log_normalize(np.asarray(predicted.X))
    scores = gene_scores(truth, pred, genes=held_out)
    fractions = cell_type_fractions(deconvolution, reference, panel, cell_type_key="cell_type")
    true_fractions = spatial.obsm["true_fractions"][fractions.columns]
    frac = fraction_scores(true_fractions.to_numpy(), fractions.to_numpy())
    gene = str(scores["PCC"].idxmax())
    column = held_out.index(gene)
    top = str(true_fractions.var().idxmax())
    _plot_maps(
        panel,
        [
            (f"{gene} predicted", f"{gene} (not in the panel): predicted", pred[:, column]),
            (f"{gene} true", f"{gene}: ground truth", truth[:, column]),
        ],
        ctx.out / "mapping_gene.png",
    )
    _plot_maps(
        panel,
        [
            (f"{top} predicted", f"fraction of {top}: predicted", fractions[top].to_numpy()),
            (f"{top} true", f"fraction of {top}: truth", true_fractions[top].to_numpy()),
        ],
        ctx.out / "mapping_fractions.png",
    )
    return [
        ("mapping", "method (genes / fractions)", f"{mapping.method} / {deconvolution.method}"),
        (
            "mapping",
            f"{len(held_out)} held-out genes: median PCC / SSIM vs truth",
            f"{scores['PCC'].median():.3f} / {scores['SSIM'].median():.3f}",
        ),
        (
            "mapping",
            f"cell-type fractions ({deconvolution.method}): RMSE / mean per-type Pearson / JS",
            f"{frac['rmse']:.3f} / {frac['pcc_mean']:.3f} / {frac['js_mean']:.3f}",
        ),
    ]


def section_integration(ctx: DemoContext) -> list[Row]:
    """Integrate the simulated mosaic; UMAPs coloured by label and batch."""
    from ..metrics import integration_scores
    from ..mosaic.api import integrate
    from ..plotting.embedding import embedding, umap_coordinates

    mdata = ctx.data["mosaic"]
    integrate(mdata, batch_key="batch", max_epochs=30, random_state=ctx.random_state)
    latent = np.asarray(mdata.obsm["X_cellweave"])
    labels = mdata.obs["cell_type"].to_numpy()
    batches = mdata.obs["batch"].to_numpy()
    scores = integration_scores(latent, labels, batches)
    embedding(
        umap_coordinates(latent, random_state=ctx.random_state),
        color={"cell type": labels, "batch": batches},
        palette=_mosaic_palette(mdata),
        title="cellweave latent (UMAP)",
        save=ctx.out / "mosaic_umap.png",
    )
    return [
        (
            "cellweave integration",
            "bio conservation / batch correction",
            f"{scores['bio_conservation']:.3f} / {scores['batch_correction']:.3f}",
        )
    ]


def _mosaic_palette(mdata) -> dict[str, dict[str, str]]:
    """Cell-type and batch colours of every mosaic figure, from (or stored in)
    ``mdata.uns["cell_type_colors"]`` / ``["batch_colors"]``: the PCA of one modality and the
    UMAP of all cells colour a batch alike even when a batch lacks that modality."""
    from ..plotting import obs_palette

    return {"cell type": obs_palette(mdata, "cell_type"), "batch": obs_palette(mdata, "batch")}


def _plot_maps(adata, maps: list[tuple[str, str, np.ndarray]], path: Path) -> None:
    """Spatial maps side by side: each ``(obs column, title, values)`` is stored in
    ``adata.obs`` (kept in the demo's output files) and drawn."""
    from ..plotting import spatial as plot_spatial

    for column, _, values in maps:
        adata.obs[column] = values
    plot_spatial(
        adata,
        color=[column for column, _, _ in maps],
        title=[title for _, title, _ in maps],
        share_scale=True,  # the panels are compared: one colour scale
        save=path,
    )


SECTIONS: list[tuple[str, Callable[[DemoContext], list[Row]]]] = [
    ("spatial data + graph", section_spatial_data),
    ("spatial imputation", section_impute),
    ("scRNA-seq to space", section_mapping),
    ("multi-omics mosaic", section_mosaic_data),
    ("mosaic integration", section_integration),
]


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("cellweave_demo"),
    show_default=True,
    help="Folder for the data, plots and summary.",
)
@click.option("--n-spots", type=click.IntRange(min=50), default=1500, show_default=True)
@click.option("--n-cells", type=click.IntRange(min=100), default=3000, show_default=True)
@seed_option
def demo(out: Path, n_spots: int, n_cells: int, random_state: int) -> None:
    """Run every capability on simulated data and print a summary table (plots saved as PNG)."""
    check_output(out, "folder", label="--out")  # a file or a read-only folder: refused now
    use_agg_backend()
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out=out, n_spots=n_spots, n_cells=n_cells, random_state=random_state)
    rows: list[Row] = []
    for _name, section in track(SECTIONS, description="cellweave demo:", label=lambda s: s[0]):
        rows.extend(section(ctx))
    print_table(
        "cellweave demo (simulated data, ground truth known)",
        rows,
        columns=("step", "measure", "value"),
    )
    import pandas as pd

    summary = pd.DataFrame(rows, columns=["step", "measure", "value"])
    with io.atomic_path(out / "summary.tsv", overwrite=True) as tmp:
        summary.to_csv(tmp, sep="\t", index=False)
    pngs = sorted(p.name for p in out.glob("*.png"))
    console.print(
        f"wrote {out}/: summary.tsv, {', '.join(pngs)}, spatial.h5ad, reference.h5ad, mosaic.h5mu"
    )
