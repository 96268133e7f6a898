"""``cellweave simulate``: write simulated data with ground truth."""

from __future__ import annotations

from pathlib import Path

import click

from .. import io
from .._progress import status
from ._common import Number, check_output, console, out_option, seed_option


@click.group()
def simulate() -> None:
    """Simulate data with ground truth (spatial tissue + reference, or a multi-omics mosaic)."""


@simulate.command("spatial")
@out_option(
    "Folder for spatial.h5ad and reference.h5ad.", required=True, short=False, dest="out_dir"
)
@click.option("--n-spots", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--n-genes", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--n-cell-types", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--n-domains", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--grid", type=click.Choice(["hex", "square", "random"]), default="hex", show_default=True
)
@click.option("--cells-per-spot", type=Number(min=1.0), default=8.0, show_default=True)
@click.option(
    "--dropout", type=Number(min=0.0, max=1.0, max_open=True), default=0.3, show_default=True
)
@click.option("--n-ref-cells", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--batch-effect", type=Number(min=0.0), default=0.5, show_default=True)
@seed_option
def simulate_spatial_cmd(out_dir: Path, overwrite: bool, **params) -> None:
    """A spatial tissue (domains, cell types, spots mixing cells, dropout) and a matched
    scRNA-seq reference with a batch effect. Ground truth is stored in the files."""
    from ..sim import simulate_spatial

    check_output(out_dir, "folder", label="--out")
    targets = [out_dir / "spatial.h5ad", out_dir / "reference.h5ad"]
    for target in targets:
        check_output(target, overwrite=overwrite, label="--out")
    with status("simulating spatial tissue"):
        spatial, reference = simulate_spatial(**params)
    for data, target in zip((spatial, reference), targets, strict=True):
        io.write(data, target, overwrite=overwrite)
    console.print(
        f"wrote {targets[0]} ({spatial.n_obs} spots x {spatial.n_vars} genes) and "
        f"{targets[1]} ({reference.n_obs} cells)"
    )


@simulate.command("mosaic")
@out_option("Output .h5mu file.", required=True, short=False)
@click.option("--n-cells", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option("--n-genes", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--n-peaks", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--n-proteins", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--n-cell-types", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--batch-effect", type=Number(min=0.0), default=0.5, show_default=True)
@click.option(
    "--batch",
    "batch_specs",
    multiple=True,
    metavar="NAME=MOD[+MOD...]",
    help="A batch and its measured modalities, e.g. --batch paired=rna+atac "
    "--batch cite=rna+protein. Repeat per batch; default: paired, rna_only, "
    "atac_only.",
)
@seed_option
def simulate_mosaic_cmd(out: Path, overwrite: bool, batch_specs: tuple[str, ...], **params) -> None:
    """Cells with RNA / ATAC / protein in batches that each measure a subset, batch effects,
    and ground-truth feature links, latent state and labels."""
    from ..sim import simulate_mosaic

    check_output(out, "h5mu", overwrite=overwrite)
    batches = _parse_batches(batch_specs) if batch_specs else None
    uses_protein = batches is not None and any("protein" in m for m in batches.values())
    if not uses_protein:
        params.pop("n_proteins")
    with status("simulating multi-omics mosaic"):
        mdata = simulate_mosaic(batches=batches, **params)
    io.write(mdata, out, overwrite=overwrite)
    mods = ", ".join(f"{k} {v.n_obs}x{v.n_vars}" for k, v in mdata.mod.items())
    console.print(f"wrote {out} ({mdata.n_obs} cells; {mods})")


def _parse_batches(specs: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    batches: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, sep, mods = spec.partition("=")
        if not sep or not name or not mods:
            raise click.BadParameter(
                f"{spec!r} is not NAME=MOD[+MOD...], e.g. paired=rna+atac", param_hint="--batch"
            )
        name = name.strip()
        if name in batches:
            raise click.BadParameter(
                f"batch {name!r} is given twice ({name}={'+'.join(batches[name])} and {spec}): "
                f"give each batch once, e.g. --batch {name}=rna+atac",
                param_hint="--batch",
            )
        batches[name] = tuple(m.strip() for m in mods.split("+"))
    return batches
