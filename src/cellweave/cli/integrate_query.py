"""``cellweave integrate --reference-model DIR QUERY.h5mu -o OUT.h5mu``: map query batches
onto a saved mosaic model (:func:`cellweave.tl.map_query`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .. import io
from .._progress import status
from ._common import Checkpointing, check_outputs, console
from ._inputs import read_input, require_inputs


def integrate_query(
    path: Path,
    out: Path,
    reference_model: Path | None,
    *,
    batch_key: str,
    label_key: str | None,
    fine_tune: bool,
    max_epochs: int,
    device: str,
    hardware: dict,
    save_model: Path | None,
    checkpoint: Checkpointing,
    random_state: int,
    overwrite: bool,
    ignored: dict[str, Any],
) -> None:
    """Read the query, map it onto ``reference_model``, write ``out`` (and the query model
    with ``save_model``); ``label_key``: true labels of the query, to report the accuracy of
    the transferred ones."""
    from .. import tl
    from ..errors import InputError, MissingKeyError

    if reference_model is None:
        raise click.UsageError("--fine-tune needs --reference-model DIR")
    given = [flag for flag, value in ignored.items() if value not in (None, False)]
    if given:
        raise click.UsageError(
            f"{given[0]} does not apply to --reference-model (the reference fixes the model)"
        )
    require_inputs(path)
    if not Path(reference_model).is_dir():
        raise InputError(
            f"--reference-model {reference_model} is not a folder: pass a folder written by "
            "cellweave integrate --save-model"
        )
    if io.h5_kind(path) != "h5mu":
        raise InputError(f"{path.name} is not a .h5mu: pass the query as a MuData (.h5mu)")
    check_outputs(
        {"--out": (out, "h5mu"), "--save-model": (save_model, "new_folder")},
        inputs=[path],
        overwrite=overwrite,
    )
    with status(f"reading {path.name}"):
        data = read_input(path, reader="any", backed=False)
    if label_key is not None and label_key not in data.obs.columns:
        raise MissingKeyError(
            f"{path.name} has no obs column {label_key!r}: pass an existing --label-key"
        )
    options = {"batch_key": batch_key, "unfrozen": fine_tune, "max_epochs": max_epochs}
    options.update(device=device, random_state=random_state, **hardware)
    model = tl.map_query(data, reference_model, return_model=True, **options, **checkpoint.kwargs)
    if model.fit_result.is_global_zero:  # else another process of a data-parallel run
        _write(data, model, out, save_model, label_key, overwrite=overwrite)


def _write(data: Any, model: Any, out: Path, save_model, label_key, *, overwrite: bool) -> None:
    """The query's outputs (and the query model), and the accuracy of its labels."""
    console.print(str(model))
    io.write(data, out, overwrite=overwrite)
    info = model.train_params
    console.print(
        f"wrote {out}: obsm['X_cellweave'] of {model.data.n_cells} query cells "
        f"({info['epochs']} epochs, {float(info['seconds']):.1f} s on {info['device']})"
    )
    if label_key is not None:
        _report_accuracy(data, label_key)
    if save_model is not None:
        model.save(save_model, overwrite=overwrite)
        console.print(f"wrote {save_model}/ (MosaicModel.load('{save_model}', query))")


def _report_accuracy(data: Any, label_key: str) -> None:
    """Accuracy of the transferred labels against the query's own ``label_key``."""
    truth = data.obs[label_key]
    known = truth.notna().to_numpy()
    for column in ("cellweave_label", "cellweave_knn_label"):
        if column in data.obs.columns and known.any():
            pred = data.obs[column].astype(str).to_numpy()[known]
            acc = float((pred == truth.astype(str).to_numpy()[known]).mean())
            console.print(f"{column}: accuracy {acc:.3f} against {label_key!r}")
