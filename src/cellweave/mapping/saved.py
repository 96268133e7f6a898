"""Mapping a new section with a saved attention mapper, by inference only (``cellweave map
--model DIR``): the model folder checked up front, its reference checked against the genes
and cell types it was trained on, the result written as :func:`~.api.map_cells` writes it.
A model saved with its reference cells (the default) needs no reference: :func:`model_reference`
rebuilds it from the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anndata import AnnData

from ..errors import FileFormatError, InputError, MissingKeyError
from .api import reference_labels, store_mapping
from .attention.persist import read_model, saved_reference
from .gene_case import check_gene_case, match_gene_case
from .result import Mapping, result_keys

__all__ = ["map_with_model", "model_info", "model_reference"]


def model_info(path: str | Path) -> dict[str, Any]:
    """The description (``model.json``) of the saved attention mapper in the folder
    ``path``; a missing folder or one that is not a saved model is one
    :class:`~cellweave.errors.FileFormatError` naming the fix."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileFormatError(
            f"the model folder {path} does not exist: pass a folder written by "
            "`cellweave map --method attention --save-model DIR` (or AttentionMapper.save)"
        )
    return read_model(folder)[0]


def model_reference(path: str | Path, cell_type_key: str | None = None) -> AnnData:
    """The reference cells saved in the model folder ``path``: counts on the model's genes,
    names and (``obs[<the model's key>]``) cell types. A model saved without them, or a
    ``cell_type_key`` other than the model's own, is one
    :class:`~cellweave.errors.InputError` naming the fix (pass the reference)."""
    meta, arrays, _ = read_model(Path(path).expanduser())
    own = meta["cell_type_key"]
    if cell_type_key is not None and cell_type_key != own:
        held = "no cell types" if own is None else f"cell types in {own!r} only"
        raise InputError(
            f"the model's saved reference has {held}, not {cell_type_key!r}: pass the "
            "reference (SC) to write the fractions of another column"
        )
    return saved_reference(path, meta, arrays)


def map_with_model(
    path: str | Path,
    adata_sc: AnnData | None,
    adata_sp: AnnData,
    *,
    cell_type_key: str | None = None,
    gene_case: str = "exact",
    key_added: str | None = None,
    copy: bool = False,
) -> Mapping | AnnData:
    """Map ``adata_sp`` with the attention mapper saved in ``path``, by inference only.

    Parameters
    ----------
    path
        A folder written by :meth:`AttentionMapper.save
        <cellweave.mapping.attention.AttentionMapper.save>`.
    adata_sc
        The reference the model was trained on (its genes, and its cell types when the model
        has a type level); cells are encoded again, so the reference may hold other cells.
        ``None``: the reference cells saved with the model (:func:`model_reference`; the
        same mapping as with the original reference).
    adata_sp
        The section to map: it must measure the model's genes.
    cell_type_key
        Column of ``adata_sc.obs`` whose fractions are written (default: the model's own).
    gene_case, key_added, copy
        As in :func:`~.api.map_cells`.

    Returns
    -------
    The :class:`~cellweave.mapping.result.Mapping`, or with ``copy=True`` the changed copy
    of ``adata_sp`` (keys as :func:`~.api.map_cells` writes them).
    """
    from .attention import AttentionMapper

    result_keys(key_added)
    check_gene_case(gene_case)
    meta = model_info(path)
    if adata_sc is None:
        adata_sc = model_reference(path, cell_type_key)
    matched_sc, matched_sp = match_gene_case(adata_sc, adata_sp, gene_case)
    for name, adata in (("the reference SC", matched_sc), ("the section SP", matched_sp)):
        _check_genes(adata, meta["genes"], name)
    key = cell_type_key if cell_type_key is not None else meta["cell_type_key"]
    labels = reference_labels(adata_sc, key)
    model = AttentionMapper.load(path, matched_sc)
    mapping = model.map(matched_sp)
    mapping.params["model"] = str(Path(path).expanduser())
    return store_mapping(mapping, adata_sc, adata_sp, labels, key_added=key_added, copy=copy)


def _check_genes(adata: AnnData, genes: list[str], name: str) -> None:
    present = set(adata.var_names)
    missing = [g for g in genes if g not in present]
    if missing:
        raise MissingKeyError(
            f"{name} lacks {len(missing)} of the model's {len(genes)} genes (e.g. "
            f"{missing[:3]}): pass data measuring the genes the model was trained on"
        )
    if not len(genes):
        raise InputError("the saved model has no genes: save the model again")
