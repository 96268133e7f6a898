"""``cellweave integrate``: mosaic multi-omics integration (or one modality across batches)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import io
from .._progress import status
from ._common import (
    Checkpointing,
    backed_choice,
    backed_option,
    check_outputs,
    checkpoint_options,
    comma_list,
    console,
    device_option,
    hardware_options,
    list_methods_option,
    metrics_json_option,
    overwrite_option,
    params_option,
    path_option,
    print_methods,
    seed_option,
    text_option,
)
from ._inputs import read_input, require_inputs


@click.command()
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Output .h5mu / .h5ad.")
@click.option("--batch-key", default="batch", show_default=True, help="obs column of batches.")
@click.option(
    "--label-key",
    default=None,
    help="obs column of cell labels (NaN = unlabelled): semi-supervised.",
)
@click.option(
    "--labelled-fraction",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=None,
    help="Keep the labels of a stratified fraction of cells only (e.g. 0.01); the others are "
    "predicted and scored in --metrics-json. 0: train unsupervised and use --label-key only "
    "for the metrics and the UMAP.",
)
@click.option(
    "--modality",
    default=None,
    metavar="KIND",
    help="Kind of a .h5ad input (one modality measured in several batches): a modality kind "
    "of --list-methods (rna, atac, protein, methylation).",
)
@text_option(
    "--graph-key", "auto", "mdata.varp guidance graph(s), comma-separated; 'auto' or 'none'."
)
@click.option(
    "--transport-source",
    default=None,
    metavar="BATCH[,BATCH]",
    help="Batches (comma-separated) measured only in a weak modality, e.g. ATAC-only: after "
    "training, move their cells onto the other cells in the latent by optimal transport "
    "(cellweave.tl.transport_batches) into obsm['X_cellweave_ot'], which the metrics and the "
    "UMAP then use.",
)
@click.option("--n-latent", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--n-clusters",
    type=click.IntRange(min=1),
    default=None,
    help="Default: label classes or silhouette.",
)
@click.option("--max-epochs", type=click.IntRange(min=1), default=100, show_default=True)
@device_option
@hardware_options
@params_option("mmd_weight=5 (see MosaicModel)")
@metrics_json_option("Write scib scores and label transfer (needs --label-key) as JSON.")
@path_option("--plot", "UMAP PNG (default: OUT with suffix _umap.png).")
@click.option("--no-plot", is_flag=True, help="Do not draw the UMAP.")
@path_option("--save-model", "Folder for the model.")
@click.option(
    "--reference-model",
    type=click.Path(path_type=Path),
    default=None,
    help="Map PATH as a query onto this saved model (a --save-model folder), scArches-style: "
    "the reference frozen, the query batches' parameters learned; writes the latent and the "
    "reference's labels transferred (classifier and kNN).",
)
@click.option(
    "--fine-tune",
    is_flag=True,
    help="With --reference-model: fine-tune every weight, not only the query's.",
)
@list_methods_option("List the modality kinds and exit.")
@checkpoint_options
@backed_option("4 GiB")
@seed_option
@overwrite_option
def integrate(
    path: Path | None,
    out: Path | None,
    batch_key: str,
    label_key: str | None,
    labelled_fraction: float | None,
    modality: str | None,
    graph_key: str,
    transport_source: str | None,
    n_latent: int,
    n_clusters: int | None,
    max_epochs: int,
    device: str,
    hardware: dict,
    params: dict[str, object],
    metrics_json: Path | None,
    plot: Path | None,
    no_plot: bool,
    save_model: Path | None,
    reference_model: Path | None,
    fine_tune: bool,
    list_methods: bool,
    checkpoint: Checkpointing,
    backed: bool | None,
    random_state: int,
    overwrite: bool,
) -> None:
    """Integrate a mosaic MuData (modalities holding only the cells they measured) into one
    latent space: writes obsm['X_cellweave'], cluster probabilities, attention weights and
    predicted labels, and a UMAP coloured by batch and label."""
    from .. import tl
    from ..errors import InputError, MissingKeyError
    from ..mosaic.config import check_options
    from ..mosaic.kinds import MODALITY_KINDS

    if list_methods:
        print_methods(MODALITY_KINDS, "modality kinds (options with their defaults)")
        return
    if path is None or out is None:
        raise click.UsageError(
            "pass the input PATH (.h5mu mosaic, or .h5ad with --modality) and -o OUT"
        )
    if modality is not None:
        MODALITY_KINDS.get(modality)  # an unknown kind: one line naming the kinds
    if reference_model is not None or fine_tune:
        from .integrate_query import integrate_query

        integrate_query(
            path,
            out,
            reference_model,
            batch_key=batch_key,
            label_key=label_key,
            fine_tune=fine_tune,
            max_epochs=max_epochs,
            device=device,
            hardware=hardware,
            save_model=save_model,
            checkpoint=checkpoint,
            random_state=random_state,
            overwrite=overwrite,
            ignored={
                "--labelled-fraction": labelled_fraction,
                "--transport-source": transport_source,
                "--n-clusters": n_clusters,
                "--metrics-json": metrics_json,
                "--modality": modality,
                "--param": params or None,
            },
        )
        return
    require_inputs(path)
    kind = io.h5_kind(path)  # what the input holds, and so the output
    if kind == "h5ad" and modality is None:
        raise InputError(
            f"{path.name} holds one modality (AnnData): pass --modality "
            f"{'|'.join(MODALITY_KINDS)}, or a .h5mu mosaic"
        )
    if kind == "h5mu" and modality is not None:
        raise InputError("--modality is for .h5ad inputs; a .h5mu names its own modalities")
    options = {"n_latent": n_latent, "n_clusters": n_clusters, **params}
    check_options({**options, "random_state": random_state})  # before any work
    if labelled_fraction is not None and label_key is None:
        raise click.UsageError("--labelled-fraction needs --label-key")
    if metrics_json is not None and label_key is None:
        raise click.UsageError("--metrics-json needs --label-key (the true labels to score)")
    plot_path = None if no_plot else (plot or out.with_name(out.name.split(".")[0] + "_umap.png"))
    outputs = {
        "--out": (out, kind),
        "--plot": (plot_path, "figure"),
        "--metrics-json": (metrics_json, "file"),
        "--save-model": (save_model, "new_folder"),
    }
    check_outputs(outputs, inputs=[path], overwrite=overwrite)
    streamed = backed_choice(path, backed, "integrate")
    with status(f"reading {path.name}"):
        data = read_input(path, reader="any", backed=streamed)
    obs = data.obs
    if batch_key not in obs.columns:
        raise MissingKeyError(
            f"{path.name} has no obs column {batch_key!r} (columns: "
            f"{', '.join(map(str, obs.columns[:8])) or 'none'}): pass --batch-key"
        )
    sources = None
    if transport_source is not None:
        from ..mosaic.transport import source_target_masks

        sources = comma_list(transport_source)
        # checked before training, so that a typo does not cost a training run
        source_target_masks(obs[batch_key].astype(str).to_numpy(), sources, batch_key=batch_key)
    truth = None
    if label_key is not None:
        if label_key not in obs.columns:
            raise MissingKeyError(
                f"{path.name} has no obs column {label_key!r}: pass an existing --label-key"
            )
        truth = obs[label_key].astype(object).where(obs[label_key].notna(), None)
        if labelled_fraction == 0:
            console.print(f"training unsupervised: {label_key!r} is used only for scoring")
    graph: object = graph_key
    if graph_key.lower() == "none":
        graph = None
    elif graph_key != "auto":
        graph = comma_list(graph_key)
    model = tl.integrate(
        data,
        batch_key=batch_key,
        label_key=label_key,
        labelled_fraction=labelled_fraction,
        graph_key=graph,
        modality=modality,
        max_epochs=max_epochs,
        device=device,
        random_state=random_state,
        return_model=True,
        **checkpoint.kwargs,
        train_kwargs=hardware,
        **options,
    )
    if not model.fit_result.is_global_zero:
        return  # another process of a data-parallel run: the first one writes the outputs
    console.print(str(model))
    supervised = label_key is not None and labelled_fraction != 0
    if labelled_fraction not in (None, 0):
        n_kept = int((model.data.label_codes >= 0).sum())
        console.print(f"kept the labels of {n_kept} of {len(truth)} cells")
    info = model.train_params
    seconds = float(info["seconds"])
    use_rep = "X_cellweave"
    if sources is not None:
        with status(f"moving {', '.join(sources)} by optimal transport"):
            tl.transport_batches(data, sources, batch_key=batch_key, device=device)
        moved = data.uns["cellweave_transport"]
        use_rep = moved["params"]["key_added"]
        console.print(
            f"moved {moved['n_moved']} cells of {', '.join(sources)} onto the others: "
            f"obsm[{use_rep!r}]"
        )
    io.write(data, out, overwrite=overwrite)
    console.print(
        f"wrote {out}: obsm['X_cellweave'] ({model.data.n_cells} cells x "
        f"{model.config.n_latent}; {info['epochs']} epochs, {seconds:.1f} s on {info['device']})"
    )
    if save_model is not None:
        model.save(save_model, overwrite=overwrite)
        console.print(f"wrote {save_model}/ (MosaicModel.load('{save_model}', mdata))")
    if metrics_json is not None:
        kinds = {m.name: m.kind for m in model.data.modalities}
        _metrics(
            data,
            truth,
            batch_key,
            use_rep,
            metrics_json,
            seconds,
            supervised,
            overwrite=overwrite,
            unintegrated={"modality": modality, "modality_types": kinds},
        )
        console.print(f"wrote {metrics_json}")
    if plot_path is not None:
        _umap(data, truth, batch_key, use_rep, plot_path, random_state, supervised)
        console.print(f"wrote {plot_path}")


def _metrics(
    data,
    truth,
    batch_key,
    use_rep: str,
    path: Path,
    seconds: float,
    supervised: bool,
    *,
    overwrite: bool,
    unintegrated: dict,
) -> None:
    """scib scores of ``obsm[use_rep]`` and label transfer (the model's own predictions too
    when it was ``supervised``) as JSON; the batch score includes PCR comparison against the
    unintegrated embedding (``mosaic.unintegrated_embedding(data, **unintegrated)``), as
    scib-metrics' Benchmarker scores it."""
    import numpy as np

    from ..metrics.scib import integration_report
    from ..mosaic import unintegrated_embedding

    known = truth.notna().to_numpy()
    emb = np.asarray(data.obsm[use_rep])[known]
    with status("the unintegrated embedding (PCA / LSI per modality)"):
        pre = unintegrated_embedding(data, **unintegrated)[known]
    with status("scoring (scib metrics, label transfer)"):
        report = integration_report(
            emb,
            truth[known].astype(str).to_numpy(),
            data.obs[batch_key].astype(str).to_numpy()[known],
            seconds=seconds,
            predictions=(
                data.obs["cellweave_label"].astype(str).to_numpy()[known] if supervised else None
            ),
            describe=True,  # which score is the model's, the chance level
            pre_embedding=pre,  # PCR comparison: Benchmarker's five batch metrics
        )
    report["embedding"] = use_rep
    with io.atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(report, indent=2))


def _umap(
    data, truth, batch_key: str, use_rep: str, path: Path, random_state: int, supervised: bool
) -> None:
    from ..plotting.embedding import embedding, umap_coordinates
    from ._common import use_agg_backend

    use_agg_backend()
    with status("UMAP of the latent space"):
        coords = umap_coordinates(data.obsm[use_rep], random_state=random_state)
    color = {"batch": data.obs[batch_key].astype(str).to_numpy()}
    if truth is not None:
        color["label"] = truth.astype(str).to_numpy()
    # the model's labels, or its clusters when it trained without labels
    panel = "predicted" if supervised else "cluster"
    color[panel] = data.obs["cellweave_label"].astype(str).to_numpy()
    title = "cellweave mosaic integration" + ("" if use_rep == "X_cellweave" else f" ({use_rep})")
    from ..plotting import obs_palette

    palette = {"batch": obs_palette(data, batch_key)}  # uns[f"{batch_key}_colors"]
    embedding(coords, color=color, palette=palette, title=title, save=path)
