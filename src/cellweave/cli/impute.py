"""``cellweave impute``: denoise a spatial data set, or evaluate methods on it."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from .. import io
from .._progress import note, status
from ..errors import InvalidOptionError
from ._common import (
    Checkpointing,
    backed_option,
    check_outputs,
    check_plot_layout,
    checkpoint_options,
    console,
    coords_option,
    device_option,
    evaluation_options,
    evaluation_request,
    hardware_options,
    layer_option,
    library_id_option,
    method_options,
    out_option,
    path_option,
    print_methods,
    print_table,
    seed_option,
    use_agg_backend,
)
from ._inputs import read_input, require_inputs


@click.command()
@click.argument("path", type=click.Path(path_type=Path), required=False)
@out_option("Output .h5ad with layers['imputed'] (required unless --evaluate).")
@click.option(
    "--method", default="auto", show_default=True, help="Imputation method (see --list-methods)."
)
@method_options("spatial_weight=0.5")
@layer_option("Layer with raw counts (default: X).")
@click.option(
    "--spatial-key",
    default="spatial",
    show_default=True,
    callback=lambda ctx, param, value: None if value.lower() == "none" else value,
    help="obsm key of the spot coordinates; 'none' imputes without them (no spatial loss, "
    "non-spatial methods and auto only).",
)
@coords_option()
@path_option("--plot", "Save a PNG: a gene raw vs imputed on the tissue.")
@click.option("--gene", default=None, help="Gene for --plot (default: the most variable).")
@library_id_option
@evaluation_options("Run the molecular cross-validation protocol instead of imputing.")
@click.option(
    "--seeds",
    default="0,1,2",
    show_default=True,
    help="With --evaluate: comma-separated molecular-split seeds.",
)
@device_option
@hardware_options
@checkpoint_options
@backed_option("0.5 GiB", " Only --method mf and mf_nospatial stream.")
@seed_option
def impute(
    path: Path | None,
    out: Path | None,
    method: str,
    params: dict[str, object],
    layer: str | None,
    spatial_key: str | None,
    coords: Path | None,
    plot: Path | None,
    gene: str | None,
    library_id: str | None,
    evaluate: bool,
    methods: str,
    metrics_json: Path | None,
    seeds: str,
    list_methods: bool,
    device: str,
    hardware: dict,
    checkpoint: Checkpointing,
    backed: bool | None,
    random_state: int,
    overwrite: bool,
) -> None:
    """Denoise spatial transcriptomics counts (writes layers['imputed'], log1p-normalized),
    or with --evaluate score methods on held-out molecules (Poisson deviance, lower is
    better)."""
    from ..impute import METHODS, get_method

    if list_methods:
        print_methods(METHODS, "imputation methods (options with their defaults)")
        return
    if path is None:
        raise click.UsageError("missing the input file PATH (.h5ad with counts and coordinates)")
    method_params = dict(params)
    # the method and its options are checked before anything is read or written
    get_method(method).check_options(method_params if evaluate else _method_options(method_params))
    if evaluate and backed:
        raise click.UsageError("--evaluate needs the data in memory: drop --backed")
    if evaluate:
        _evaluate(
            path,
            coords=coords,
            layer=layer,
            spatial_key=spatial_key,
            methods=methods,
            seeds=_parse_seeds(seeds),
            metrics_json=metrics_json,
            method_params=method_params,
            default=method,
            overwrite=overwrite,
            device=device,
        )
        return
    _add_device(method_params, get_method(method), device)
    if out is None:
        raise click.UsageError("missing -o/--out (or pass --evaluate)")
    if spatial_key is None and (coords is not None or plot is not None):
        raise click.UsageError("--spatial-key none leaves no coordinates for --coords / --plot")
    outputs = {"--out": (out, "h5ad"), "--plot": (plot, "figure")}
    require_inputs(path, coords)
    check_outputs(outputs, inputs=[path], overwrite=overwrite)
    from ..impute import impute as run_impute
    from ..impute.api import DEFAULT_KEY, DEFAULT_LAYER
    from ..train import is_global_zero, training_options

    streamed = _streams(path, backed, method=method, plot=plot)
    if streamed is not None:
        _impute_backed(
            path, out, method=streamed, coords=coords, layer=layer, spatial_key=spatial_key,
            random_state=random_state, overwrite=overwrite, method_params=method_params,
            **checkpoint.kwargs,
        )  # fmt: skip
        return
    adata = read_input(path, coords=coords, spatial_key=spatial_key)
    if plot is not None:  # before imputing, not after
        check_plot_layout(adata, spatial_key=spatial_key, library_id=library_id)
    if plot is not None and gene is not None:
        _check_gene(adata, gene)
    with status(f"imputing with {method}"), training_options(**hardware):
        run_impute(
            adata,
            method=method,
            layer=layer,
            spatial_key=spatial_key,
            random_state=random_state,
            **checkpoint.kwargs,
            **method_params,
        )
    if not is_global_zero():
        return  # another process of a data-parallel run: the first one writes the outputs
    io.write(adata, out, overwrite=overwrite)
    key = method_params.get("key_added")
    layer_key, uns_key = (DEFAULT_LAYER, DEFAULT_KEY) if key is None else (key, key)
    console.print(
        f"wrote {out}: layers[{layer_key!r}] ({adata.n_obs} spots x {adata.n_vars} genes, "
        f"method {method}, {adata.uns[uns_key]['seconds']:.1f} s)"
    )
    if plot is not None:
        _plot(
            adata, plot, gene=gene, layer=layer, spatial_key=spatial_key, key=layer_key,
            library_id=library_id,
        )  # fmt: skip
        console.print(f"wrote {plot}")


def _streams(path: Path, backed: bool | None, *, method: str, plot: Path | None) -> str | None:
    """The method that streams ``path`` from disk, or ``None`` (in memory): ``--backed`` as
    given (a method that cannot stream, or ``--plot``, is one line and exit 2); automatic
    above the size of :func:`cellweave.io.use_backed` when the method streams, else in memory
    with one line on stderr saying why. The default ``auto`` streams as ``mf`` (its mixture
    candidate needs the whole matrix), said in one line."""
    from ..impute.backed import STREAMING_METHODS, check_streams

    streamed = "mf" if method == "auto" else method
    if backed:
        check_streams(streamed)
        if plot is not None:
            raise click.UsageError("--plot needs the imputed layer in memory: drop --backed")
    else:
        on, why_backed = io.use_backed(path, backed, threshold="impute")
        if not on:
            return None
        if streamed not in STREAMING_METHODS or plot is not None:
            why = "--plot needs the result" if plot is not None else f"method {method!r} needs it"
            note(
                f"reading {path.name} into memory although it is large: {why} in memory "
                f"({', '.join(STREAMING_METHODS)} stream with --backed)",
                level=logging.WARNING,
            )
            return None
        note(why_backed)
    if streamed != method:
        note(
            "method 'auto' streams as 'mf' (its mixture candidate needs the whole matrix in "
            "memory; --no-backed keeps auto)"
        )
    return streamed


def _impute_backed(path: Path, out: Path, *, method: str, coords, method_params, **kwargs) -> None:
    """Read ``path`` backed, impute streamed (:func:`cellweave.impute.impute_backed`) and
    write ``out`` block by block."""
    from ..impute import impute_backed

    adata = read_input(path, coords=coords, spatial_key=kwargs["spatial_key"], backed=True)
    try:
        with status(f"imputing with {method}, streamed from disk"):
            impute_backed(adata, out, method=method, **kwargs, **method_params)
    finally:
        adata.file.close()
    key = method_params.get("key_added") or "imputed"
    console.print(
        f"wrote {out}: layers[{key!r}] ({adata.n_obs} spots x {adata.n_vars} genes, "
        f"method {method}, streamed from disk)"
    )


def _evaluate(
    path: Path,
    *,
    coords,
    layer,
    spatial_key,
    methods,
    seeds,
    metrics_json,
    method_params,
    default,
    overwrite,
    device,
) -> None:
    from ..impute import evaluate

    chosen, params = evaluation_request(
        methods, default, method_params, metrics_json=metrics_json, overwrite=overwrite
    )
    adata = read_input(path, coords=coords, spatial_key=spatial_key)
    result = evaluate(
        adata,
        methods=chosen,
        seeds=seeds,
        layer=layer,
        spatial_key=spatial_key,
        method_params=params,
        device=device,
    )
    table = result.table
    columns = [
        c
        for c in ("kind", "deviance", "log_mse", "gene_pearson_median", "seconds")
        if c in table.columns
    ]
    rows = [(name, *(table.loc[name, c] for c in columns)) for name in table.index]
    print_table(
        f"molecular cross-validation on {path.name} (seeds {','.join(map(str, seeds))}; lower "
        "deviance is better)",
        rows,
        columns=("method", *columns),
    )
    if metrics_json is not None:
        result.write_json(metrics_json, default_name=default)
        console.print(f"wrote {metrics_json}")


def _add_device(params: dict, spec, device: str) -> None:
    """``--device`` into the options of a method that takes one; a method that runs on the
    CPU only refuses a GPU device (one line, before any file is read)."""
    if device == "auto" or "device" in params:
        return
    if "device" in spec.options:
        params["device"] = device
        return
    from ..device import check_device

    if check_device(device) != "cpu":
        from ..impute import METHODS

        takers = [n for n in METHODS if "device" in METHODS[n].options]
        raise InvalidOptionError(
            f"imputation method {spec.name!r} runs on the CPU only; --device {device} "
            f"applies to {', '.join(takers)}"
        )


def _method_options(params: dict) -> dict:
    """``--param`` values that are the method's options (not ``tl.impute``'s own)."""
    return {k: v for k, v in params.items() if k not in ("target_sum", "key_added")}


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of integers", param_hint="--seeds"
        ) from None
    if not seeds:
        raise click.BadParameter("give at least one seed", param_hint="--seeds")
    if min(seeds) < 0:
        raise click.BadParameter(f"{text!r}: seeds must be integers >= 0", param_hint="--seeds")
    return seeds


def _check_gene(adata, gene: str) -> None:
    """``--gene`` must name a gene of the data."""
    if gene not in adata.var_names:
        from ..errors import MissingKeyError

        raise MissingKeyError(f"gene {gene!r} is not in the data; pass --gene with a var name")


def _plot(
    adata,
    path: Path,
    *,
    gene: str | None,
    layer: str | None,
    spatial_key: str,
    key: str,
    library_id: str | None = None,
) -> None:
    """Raw vs imputed ``gene`` on the tissue (``gene`` already checked by the command;
    default: the imputed gene with the most spatial structure, not a mitochondrial,
    haemoglobin or ribosomal one), both maps on one colour scale."""
    import numpy as np

    from ..plotting import informative_gene, spatial
    from ..pp import log_normalize

    use_agg_backend()
    imputed = adata.layers[key]
    if gene is None:
        gene = informative_gene(adata, layer=key, spatial_key=spatial_key)
    column = adata.var_names.get_loc(gene)
    counts = adata.X if layer is None else adata.layers[layer]
    raw = log_normalize(counts)[:, column]
    raw = raw.toarray().ravel() if hasattr(raw, "toarray") else np.asarray(raw).ravel()
    view = adata.copy()
    view.obs[f"{gene} raw"] = raw
    view.obs[f"{gene} imputed"] = imputed[:, column]
    spatial(
        view,
        color=[f"{gene} raw", f"{gene} imputed"],
        spatial_key=spatial_key,
        title=[f"{gene}: raw (log-normalized)", f"{gene}: imputed"],
        share_scale=True,
        library_id=library_id,
        save=path,
    )
