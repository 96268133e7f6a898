"""``cellweave align``: align section B onto section A (fused Gromov-Wasserstein + Procrustes)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import io
from .._progress import status
from ..errors import InvalidOptionError
from ._common import (
    check_outputs,
    console,
    coords_option,
    device_option,
    layer_option,
    method_options,
    out_option,
    path_option,
    print_methods,
    seed_option,
    spatial_key_option,
    text_option,
    use_agg_backend,
)
from ._inputs import read_input, require_inputs

# align_sections keywords that have their own flag (not taken by --param)
_FLAGS = ("alpha", "nonrigid", "overlap", "structure_only", "reflection")


def _overlap(value: str) -> float | None:
    if value.strip().lower() in ("none", "balanced"):
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a number in (0, 1] nor 'none'", param_hint="--overlap"
        ) from None


@click.command()
@click.argument("path_a", type=click.Path(path_type=Path), required=False)
@click.argument("path_b", type=click.Path(path_type=Path), required=False)
@out_option("Output .h5ad: section B with obsm[KEY_ADDED] and uns[KEY_ADDED] (required).")
@click.option(
    "--alpha",
    type=click.FloatRange(0.0, 1.0),
    default=0.1,
    show_default=True,
    help="Weight of geometry against expression in the matching.",
)
@click.option("--nonrigid", is_flag=True, help="Refine with a smooth displacement field.")
@text_option(
    "--overlap",
    "0.7",
    "Fraction of spots with a counterpart (partial matching), or 'none' for balanced.",
)
@click.option(
    "--structure-only",
    is_flag=True,
    help="Compare no features across sections (two modalities without shared features).",
)
@click.option("--reflection", is_flag=True, help="Allow a mirrored section.")
@click.option(
    "--feature-pairs",
    default=None,
    metavar="auto|TABLE",
    help="Two modalities (e.g. RNA vs protein): 'auto' pairs genes with antibodies by name; "
    "or a CSV/TSV table, one pair per row (feature of A, feature of B).",
)
@path_option(
    "--transfer-out",
    "Also write section A with B's features averaged over its matched spots in "
    "obsm[TRANSFER_KEY] (e.g. the protein panel on the RNA spots).",
)
@click.option("--transfer-key", default="protein", show_default=True)
@layer_option("Layer of both files to compare (default: X).")
@spatial_key_option
@coords_option("--coords-a", of="PATH_A", dest="coords_a")
@coords_option("--coords-b", of="PATH_B", dest="coords_b")
@click.option("--key-added", default="spatial_aligned", show_default=True)
@path_option("--plot", "Save a PNG of the two sections overlaid before and after alignment.")
@method_options("refine=3", "List the align solvers and exit.")
@device_option
@seed_option
def align(
    path_a: Path | None,
    path_b: Path | None,
    out: Path | None,
    overlap: str,
    spatial_key: str,
    coords_a: Path | None,
    coords_b: Path | None,
    plot: Path | None,
    feature_pairs: str | None,
    transfer_out: Path | None,
    transfer_key: str,
    params: dict[str, object],
    list_methods: bool,
    overwrite: bool,
    **flags,
) -> None:
    """Align section PATH_B onto section PATH_A (.h5ad files with obsm coordinates).

    Matches the spots with fused Gromov-Wasserstein over expression (shared genes, or with
    --feature-pairs the paired features of two modalities) and geometry, then fits a rigid
    transform (and with --nonrigid a smooth warp). Writes section B with the aligned
    coordinates in obsm[KEY_ADDED] and the matching in uns[KEY_ADDED]; with --transfer-out
    also section A with B's features carried onto its spots. Solver options without a flag go
    through --param (see --list-methods).
    """
    # flags: alpha, nonrigid, structure_only, reflection, layer, key_added, device,
    # random_state: align_sections' keywords, passed as they are
    from ..align import SOLVERS, align_sections, read_pairs, transfer_features

    if list_methods:
        print_methods(SOLVERS, "align solvers", entry="solver")
        return
    if path_a is None or path_b is None:
        raise click.UsageError("missing the input files PATH_A and PATH_B (.h5ad)")
    if out is None:
        raise click.UsageError("missing -o/--out")
    overlap_value = _overlap(overlap)
    solver_params = _solver_params(params, overlap=overlap_value)
    outputs = {
        "--out": (out, "h5ad"),
        "--plot": (plot, "figure"),
        "--transfer-out": (transfer_out, "h5ad"),
    }
    require_inputs(path_a, path_b, coords_a, coords_b)
    check_outputs(outputs, inputs=[path_a, path_b], overwrite=overwrite)
    if feature_pairs is not None and feature_pairs.strip().lower() != "auto":
        read_pairs(feature_pairs)  # an unreadable table: one line before the sections are read
    adata_a = read_input(path_a, coords=coords_a, spatial_key=spatial_key)
    adata_b = read_input(path_b, coords=coords_b, spatial_key=spatial_key)
    with status("aligning sections"):
        align_sections(
            adata_a,
            adata_b,
            spatial_key=spatial_key,
            overlap=overlap_value,
            feature_pairs=feature_pairs,
            **flags,
            **solver_params,
        )
        if transfer_out is not None:
            transfer_features(
                adata_a,
                adata_b,
                key=flags["key_added"],
                layer=flags["layer"],
                key_added=transfer_key,
            )
    io.write(adata_b, out, overwrite=overwrite)
    key_added = flags["key_added"]
    info = adata_b.uns[key_added]
    shift = ", ".join(f"{t:.3g}" for t in info["translation"])
    console.print(
        f"wrote {out}: obsm[{key_added!r}] for {adata_b.n_obs} spots of B on {adata_a.n_obs} "
        f"of A (rotation {info['angle']:.1f} deg, translation ({shift}), "
        f"{100 * info['overlap_fraction']:.0f}% of B's spots on A after alignment, "
        f"{info['seconds']:.1f} s)"
    )
    _report_pairs(info["params"])
    if transfer_out is not None:
        io.write(adata_a, transfer_out, overwrite=overwrite)
        counts = adata_a.uns[transfer_key]
        console.print(
            f"wrote {transfer_out}: obsm[{transfer_key!r}] with {adata_b.n_vars} features of B "
            f"on {adata_a.n_obs} spots of A ({counts['n_matched']} matched, "
            f"{counts['n_nearest']} from the nearest spot, {counts['n_none']} without)"
        )
    if plot is not None:
        from ..plotting.alignment import overlay

        use_agg_backend()
        overlay(
            adata_a,
            adata_b,
            key=key_added,
            spatial_key=spatial_key,
            labels=(path_a.stem, path_b.stem),
            save=plot,
        )
        console.print(f"wrote {plot}")


def _report_pairs(params: dict) -> None:
    """One line on the feature pairs used, when there were any."""
    if params.get("feature_pairs") in (False, None):
        return
    rna = {"a": " (A is the RNA section)", "b": " (B is the RNA section)"}
    console.print(
        f"compared {params['n_feature_pairs']} feature pairs ({params['feature_pairs']})"
        + rna.get(params.get("rna_section"), "")
    )


def _solver_params(params: dict[str, object], *, overlap: float | None) -> dict[str, object]:
    """``--param KEY=VALUE`` options, checked with ``--overlap`` against the align solvers
    before any file is read (an unknown or out-of-range option: one line, exit 2)."""
    from ..align import check_options

    for key in params:
        if key in _FLAGS:
            flag = "--" + key.replace("_", "-")
            raise InvalidOptionError(f"--param {key}=...: {key} has its own flag, pass {flag}")
    check_options({**params, "overlap": overlap})
    return params
