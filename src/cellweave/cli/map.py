"""``cellweave map``: map scRNA-seq cells onto spatial data, or evaluate mapping methods."""

from __future__ import annotations

from pathlib import Path

import click

from .. import io
from .._progress import status
from ._common import (
    Checkpointing,
    check_outputs,
    check_plot_layout,
    checkpoint_options,
    comma_list,
    console,
    coords_option,
    device_option,
    evaluated_output,
    evaluation_options,
    evaluation_request,
    hardware_options,
    library_id_option,
    method_options,
    out_option,
    path_option,
    print_methods,
    seed_option,
    use_agg_backend,
)
from ._inputs import read_input, require_inputs
from .map_model import check_model_flags, check_save_model, map_saved, model_info


@click.command("map")
@click.argument("sc_path", metavar="SC", type=click.Path(path_type=Path), required=False)
@click.argument("sp_path", metavar="SP", type=click.Path(path_type=Path), required=False)
@out_option(
    "Output .h5ad: SP with uns['mapping'], obsm['predicted_genes'] and, with "
    "--cell-type-key, obsm['cell_type_fractions'] (required unless --evaluate)."
)
@click.option(
    "--method",
    default="auto",
    show_default=True,
    help="Mapping method: auto (= ot, best for genes; with --cell-type-key the measured best "
    "for cell-type fractions, attention on raw counts, else gradient), softmax, ot, fgw, "
    "gradient or attention; see --list-methods.",
)
@click.option(
    "--cell-type-key",
    default=None,
    help="Column of SC's obs with cell types: write per-spot fractions.",
)
@click.option(
    "--genes",
    "predict",
    default="missing",
    show_default=True,
    help="Genes to predict at every spot: 'missing' (SC genes SP lacks), 'all', 'none' or a "
    "comma-separated list.",
)
@coords_option(of="SP")
@click.option(
    "--gene-case",
    type=click.Choice(["exact", "upper", "lower", "insensitive"]),
    default="exact",
    show_default=True,
    help="How SC and SP gene names are matched: as written, upper- or lower-cased on both "
    "sides (Tangram lower-cases), or up to case keeping SP's spelling.",
)
@method_options("perplexity=30 or a feature option such as n_pcs=50")
@device_option
@hardware_options
@evaluation_options("Score methods by leave-gene-out cross-validation instead of mapping.")
@click.option(
    "--folds", default=5, show_default=True, type=click.IntRange(min=2), help="With --evaluate."
)
@click.option(
    "--scheme",
    type=click.Choice(["normalized", "raw", "both"]),
    default="normalized",
    show_default=True,
    help="With --evaluate: truth divided by spot depth (normalized) or raw values.",
)
@path_option(
    "--plot",
    "Save PNG maps: PLOT.png gives PLOT_fractions.png (every type's fraction, one shared "
    "scale; with --cell-type-key), PLOT_genes.png (predicted genes), PLOT_views.png (view "
    "weights; method attention) and PLOT_truth.png (predicted vs true fractions where SP has "
    "obsm['true_fractions']). The folder must exist.",
)
@library_id_option
@path_option(
    "--save-model",
    "With --method attention: save the trained model into this folder (a new or empty one), "
    "to map other sections later with --model.",
)
@path_option(
    "--model",
    "Map SP with a model saved by --save-model, by inference only (no training): "
    "`cellweave map --model DIR SP -o OUT`. SP must measure the model's genes; SC is "
    "optional (the model carries its reference cells on its genes): pass the reference it "
    "was trained on to predict genes outside the model's or fractions of another column.",
)
@checkpoint_options
@seed_option
def map_cmd(
    sc_path: Path,
    sp_path: Path,
    out: Path | None,
    method: str,
    cell_type_key: str | None,
    predict: str,
    coords: Path | None,
    gene_case: str,
    params: dict[str, object],
    device: str,
    hardware: dict,
    evaluate: bool,
    methods: str,
    metrics_json: Path | None,
    folds: int,
    scheme: str,
    list_methods: bool,
    plot: Path | None,
    library_id: str | None,
    save_model: Path | None,
    model: Path | None,
    checkpoint: Checkpointing,
    random_state: int,
    overwrite: bool,
) -> None:
    """Map the cells of a scRNA-seq reference SC onto spatial data SP (.h5ad files sharing
    genes), predict genes at every spot and, with --cell-type-key, estimate cell-type
    fractions; or, with --evaluate, score methods on held-out genes. With --model DIR: map
    SP (SC optional) with a saved attention model."""
    from ..mapping.api import METHODS, check_params, resolve_method

    if list_methods:
        print_methods(METHODS, "mapping methods (options with their defaults)")
        return
    if model is not None and sp_path is None:  # `--model DIR SP`: the model holds SC's cells
        sc_path, sp_path = None, sc_path
    if sp_path is None or (sc_path is None and model is None):
        raise click.UsageError(
            "missing the input files SC and SP (.h5ad sharing genes; with --model, SP alone)"
        )
    inputs = [p for p in (sc_path, sp_path) if p is not None]
    method_params = dict(params)
    check_model_flags(
        model=model,
        save_model=save_model,
        method=method,
        evaluate=evaluate,
        params=method_params,
        checkpoint=checkpoint,
    )
    solver = "attention" if model is not None else method
    solver = resolve_method(solver, cell_type_key=cell_type_key, params=method_params)
    check_params(solver, method_params)  # before anything is read or written
    check_save_model(save_model, solver, inputs=inputs, overwrite=overwrite)
    if evaluate:
        if plot is not None:
            raise click.UsageError("--plot draws a mapping: drop it with --evaluate")
        require_inputs(coords)
        _evaluate(
            sc_path,
            sp_path,
            coords=coords,
            gene_case=gene_case,
            folds=folds,
            methods=methods,
            scheme=scheme,
            metrics_json=metrics_json,
            method=method,
            method_params=method_params,
            random_state=random_state,
            overwrite=overwrite,
        )
        return
    require_inputs(sc_path, sp_path, coords)
    evaluated_output(out, inputs=inputs, overwrite=overwrite)
    _check_plot(plot, out=out, inputs=inputs, overwrite=overwrite)
    if model is not None:
        model_info(model)  # not a saved model: refused before reading the data
    from ..mapping.api import map_cells, project_genes
    from ..train import is_global_zero, training_options

    if sc_path is None:  # the reference cells saved with the model stand for SC
        from ..mapping.saved import model_reference

        adata_sc = model_reference(model, cell_type_key)
    else:
        adata_sc = read_input(sc_path)
    adata_sp = read_input(sp_path, coords=coords)
    sc_name = "SC" if sc_path is not None else "the model's reference (pass SC for other genes)"
    genes = _genes_to_predict(predict, adata_sc, adata_sp, gene_case, sc_name)  # before mapping
    if plot is not None:
        from ..validate import check_spatial

        check_spatial(adata_sp, name="SP")  # maps need coordinates: refused before mapping
        check_plot_layout(adata_sp, spatial_key="spatial", library_id=library_id)
    if model is not None:
        with status(f"mapping {adata_sp.n_obs} spots with the model {model}"):
            mapping, cell_type_key = map_saved(model, adata_sc, adata_sp, cell_type_key, gene_case)
    else:
        with (
            status(f"mapping {adata_sc.n_obs} cells onto {adata_sp.n_obs} spots ({method})"),
            training_options(**hardware),
        ):
            mapping = map_cells(
                adata_sc,
                adata_sp,
                method=method,
                cell_type_key=cell_type_key,
                gene_case=gene_case,
                random_state=random_state,
                device=device,
                **checkpoint.kwargs,
                **method_params,
            )
    if not is_global_zero():
        return  # another process of a data-parallel run: the first one writes the outputs
    if genes:
        project_genes(mapping, adata_sc, genes=genes, adata_sp=adata_sp)
    io.write(adata_sp, out, overwrite=overwrite)
    parts = [f"uns['mapping'] ({mapping.plan.nnz} cell-spot pairs, method {mapping.method})"]
    if genes:
        parts.append(f"obsm['predicted_genes'] ({len(genes)} genes)")
    if cell_type_key is not None:
        parts.append("obsm['cell_type_fractions']")
    console.print(f"wrote {out}: " + ", ".join(parts))
    if save_model is not None:
        mapping.outputs["model"].save(save_model, overwrite=overwrite)
        console.print(f"wrote {save_model}/ (cellweave map --model {save_model} SP -o OUT)")
    if plot is not None:
        from ..plotting import mapping_plots

        use_agg_backend()
        written = mapping_plots(adata_sp, plot, library_id=library_id)
        for path in written.values():
            console.print(f"wrote {path}")
        if not written:
            console.print("--plot: nothing to draw; pass --cell-type-key or predict --genes")


def _check_plot(plot: Path | None, *, out: Path, inputs: list[Path], overwrite: bool) -> None:
    """``--plot PLOT.png``, before anything is read: a .png in an existing folder, and none
    of the figures it stands for an input, the output, or (without --overwrite) a file."""
    if plot is None:
        return
    from ..errors import FileFormatError
    from ..plotting import plot_paths

    if plot.suffix.lower() != ".png":
        raise FileFormatError(
            f"--plot {plot} must end in .png (figures are PNG files): rename it, e.g. "
            f"{plot.with_suffix('.png').name}"
        )
    if not plot.parent.is_dir():
        raise FileFormatError(
            f"--plot {plot}: the folder {plot.parent} does not exist; create it or choose "
            "another path"
        )
    outputs = {f"--plot ({kind})": (path, "figure") for kind, path in plot_paths(plot).items()}
    check_outputs({"--out": (out, "h5ad"), **outputs}, inputs=inputs, overwrite=overwrite)


def _genes_to_predict(
    spec: str, adata_sc, adata_sp, gene_case: str = "exact", sc_name: str = "SC"
) -> list[str]:
    """The genes ``--genes`` asks for (checked before mapping; ``missing``: SC's genes
    that SP lacks, names compared as ``--gene-case`` compares them; ``sc_name`` names the
    reference in the error)."""
    import pandas as pd

    from ..errors import MissingKeyError
    from ..mapping.gene_case import same_gene

    key = spec.strip().lower()
    if key == "none":
        return []
    if key == "all":
        return list(adata_sc.var_names)
    if key == "missing":
        present = same_gene(adata_sc.var_names, adata_sp.var_names, gene_case)
        return list(adata_sc.var_names[~present])
    genes = comma_list(spec)
    absent = pd.Index(genes).difference(adata_sc.var_names)
    if len(absent):
        raise MissingKeyError(
            f"--genes {spec!r} names {len(absent)} gene(s) absent from {sc_name} (e.g. "
            f"{list(absent[:3])}): pass genes of the reference, or 'missing'/'all'/'none'"
        )
    return genes


def _evaluate(
    sc_path: Path,
    sp_path: Path,
    *,
    coords: Path | None,
    gene_case: str,
    folds: int,
    methods: str,
    scheme: str,
    metrics_json: Path | None,
    method: str,
    method_params: dict,
    random_state: int,
    overwrite: bool,
) -> None:
    from ..mapping.api import DEFAULT_METHOD
    from ..mapping.evaluate import evaluate

    default = DEFAULT_METHOD if method == "auto" else method
    chosen, params = evaluation_request(
        methods, default, method_params, metrics_json=metrics_json, overwrite=overwrite
    )
    from ..mapping.gene_case import match_gene_case

    adata_sc, adata_sp = read_input(sc_path), read_input(sp_path, coords=coords)
    adata_sc, adata_sp = match_gene_case(adata_sc, adata_sp, gene_case)
    result = evaluate(
        adata_sc,
        adata_sp,
        methods=chosen,
        folds=folds,
        scheme=scheme,
        random_state=random_state,
        method_params=params,
    )
    for s in result.schemes:
        console.print(f"[bold]{s} scheme[/bold] ({folds} folds; higher pcc/ssim is better)")
        console.print(result.format(s))
    if metrics_json is not None:
        primary = None if scheme == "both" else scheme
        result.write_json(metrics_json, primary, default_name=DEFAULT_METHOD)
        console.print(f"wrote {metrics_json}")
