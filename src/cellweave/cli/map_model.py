"""``cellweave map --save-model DIR`` / ``--model DIR``: saving the trained attention mapper
and mapping a new section with it by inference only; every contradictory combination of
options refused before anything is read."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import Checkpointing, check_outputs

#: The one method whose trained model is saved and loaded.
MODEL_METHOD = "attention"


def check_model_flags(
    *,
    model: Path | None,
    save_model: Path | None,
    method: str,
    evaluate: bool,
    params: dict[str, object],
    checkpoint: Checkpointing,
) -> None:
    """``--model`` with what it cannot go with, and ``--save-model`` with ``--evaluate``:
    one usage line each."""
    if save_model is not None and evaluate:
        raise click.UsageError("--save-model saves a mapping's model: drop it with --evaluate")
    if model is None:
        return
    clashes = {
        "--save-model": save_model is not None,
        "--evaluate": evaluate,
        "--param": bool(params),
        "--checkpoint-dir": checkpoint.checkpoint_dir is not None,
    }
    for flag, given in clashes.items():
        if given:
            raise click.UsageError(
                f"--model maps with a trained model, without training: drop {flag}"
            )
    if method not in ("auto", MODEL_METHOD):
        raise click.UsageError(
            f"--model holds an {MODEL_METHOD} model: drop --method {method} (or pass "
            f"--method {MODEL_METHOD})"
        )


def check_save_model(
    save_model: Path | None, solver: str, *, inputs: list[Path], overwrite: bool
) -> None:
    """``--save-model DIR``: the method trains a model that can be saved, and ``DIR`` is a
    new or empty folder (or ``--overwrite``) that is none of the inputs."""
    if save_model is None:
        return
    if solver != MODEL_METHOD:
        raise click.UsageError(
            f"--save-model saves the {MODEL_METHOD} model; method {solver} has none to save: "
            f"pass --method {MODEL_METHOD}"
        )
    check_outputs({"--save-model": (save_model, "new_folder")}, inputs=inputs, overwrite=overwrite)


def model_info(model: Path) -> dict:
    """The saved model's description (a missing folder or one that is not a saved model:
    one line)."""
    from ..mapping.saved import model_info as info

    return info(model)


def map_saved(model: Path, adata_sc, adata_sp, cell_type_key: str | None, gene_case: str):
    """``(mapping, cell-type key used)``: ``adata_sp`` mapped by the saved model (inference
    only), written into ``adata_sp`` as ``map_cells`` writes; the fractions are those of
    ``cell_type_key`` or else of the model's own key."""
    from ..mapping.saved import map_with_model

    key = cell_type_key if cell_type_key is not None else model_info(model)["cell_type_key"]
    mapping = map_with_model(model, adata_sc, adata_sp, cell_type_key=key, gene_case=gene_case)
    return mapping, key
