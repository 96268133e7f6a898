"""Saving and loading a trained attention mapper: one folder of three files.

``model.json`` (format, cellweave version, options, genes, types, view widths, training
parameters), ``arrays.npz`` (compressed: the principal axes of the candidate search, the
training section's view statistics and, unless saved with ``reference=False``, the reference
cells: their counts on the model's genes as CSR, names and type codes,
:func:`reference_arrays`) and ``weights.pt`` (the module's state). With the reference inside,
the folder maps a section on its own (:func:`saved_reference` rebuilds the reference: the
same counts, so the same mapping as with the original reference); its size is the
reference's non-zero counts on the model's genes. Saving is atomic
(:func:`cellweave.io.atomic_dir`); loading never unpickles objects
(``torch.load(weights_only=True)``, ``np.load`` without pickles); a missing or corrupt file
is one :class:`~cellweave.errors.FileFormatError`.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from ... import __version__
from ...errors import FileFormatError, InputError
from ...io import atomic_dir
from ...validate import check_adata

__all__ = ["FORMAT", "read_model", "reference_arrays", "saved_reference", "write_model"]

_META, _ARRAYS, _WEIGHTS = "model.json", "arrays.npz", "weights.pt"
_FILES = (_META, _ARRAYS, _WEIGHTS)
_REQUIRED = ("options", "genes", "types", "dims", "cell_type_key")
#: Version of the saved layout.
FORMAT = 1


def write_model(
    path: str | Path,
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    state: Mapping[str, torch.Tensor],
    *,
    overwrite: bool = False,
) -> Path:
    """Write the model folder atomically (an existing one only with ``overwrite``)."""
    with atomic_dir(path, overwrite=overwrite, replaceable=_FILES) as tmp:
        full = {"format": FORMAT, "cellweave_version": __version__, **meta}
        (tmp / _META).write_text(json.dumps(full, indent=1))
        np.savez_compressed(tmp / _ARRAYS, **arrays)
        torch.save(dict(state), tmp / _WEIGHTS)
    return Path(path).expanduser()


def read_model(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict]:
    """``(meta, arrays, state)`` of a saved model folder."""
    path = Path(path).expanduser()
    for name in _FILES:
        if not (path / name).exists():
            raise FileFormatError(f"{path / name} is missing: {path} is not a saved model")
    try:
        meta = json.loads((path / _META).read_text())
        with np.load(path / _ARRAYS) as npz:
            arrays = {k: npz[k] for k in npz.files}
        state = torch.load(path / _WEIGHTS, map_location="cpu", weights_only=True)
    except (OSError, ValueError, EOFError, RuntimeError, KeyError, zipfile.BadZipFile) as err:
        raise FileFormatError(
            f"{path} cannot be read, a file is truncated or corrupt ({type(err).__name__}): "
            "save the model again with model.save(path)"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FileFormatError(
            f"{path / _META} is not an attention mapper of format {FORMAT}: train and save "
            "the model again"
        )
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise FileFormatError(f"{path / _META} lacks {missing}: save the model again")
    return meta, arrays, state


#: Keys of ``arrays.npz`` holding the reference cells (:func:`reference_arrays`).
_REFERENCE = ("ref_data", "ref_indices", "ref_indptr", "ref_shape", "ref_cells")


def reference_arrays(
    adata_sc: AnnData,
    genes: Sequence[str],
    types: Sequence[str],
    *,
    layer: str | None,
    cell_type_key: str | None,
) -> dict[str, np.ndarray]:
    """The arrays that store the reference cells in a model folder: every cell's counts on
    the model's ``genes`` (float32 CSR; cells without counts too, so a plan keeps the
    reference's rows), names and (with ``cell_type_key``) codes in the model's ``types``."""
    X = check_adata(adata_sc, layer=layer, allow_zero_cells=True, name="adata_sc")
    csr = sparse.csr_matrix(X[:, adata_sc.var_names.get_indexer(genes)], dtype=np.float32)
    out = {
        "ref_data": csr.data,
        "ref_indices": csr.indices,
        "ref_indptr": csr.indptr,
        "ref_shape": np.asarray(csr.shape, dtype=np.int64),
        "ref_cells": np.asarray([str(c) for c in adata_sc.obs_names], dtype=str),
    }
    if cell_type_key is not None:
        labels = adata_sc.obs[cell_type_key].astype(str)
        out["ref_codes"] = pd.Categorical(labels, categories=list(types)).codes.astype(np.int64)
    return out


def saved_reference(
    path: str | Path, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> AnnData:
    """The reference cells stored in the model folder ``path`` (:func:`reference_arrays`)
    as an AnnData: counts on the model's genes in ``X``, the cell types in
    ``obs[meta["cell_type_key"]]``. A model saved without them is one
    :class:`~cellweave.errors.InputError` naming the fix."""
    if any(k not in arrays for k in _REFERENCE):
        raise InputError(
            f"the model in {path} was saved without its reference cells (save(..., "
            "reference=False) or an older cellweave): pass the reference it was trained on"
        )
    X = sparse.csr_matrix(
        (arrays["ref_data"], arrays["ref_indices"], arrays["ref_indptr"]),
        shape=tuple(int(n) for n in arrays["ref_shape"]),
    )
    obs = pd.DataFrame(index=pd.Index(arrays["ref_cells"].astype(str), dtype=object))
    key = meta["cell_type_key"]
    if key is not None:
        codes = arrays["ref_codes"]
        obs[key] = pd.Categorical.from_codes(codes, categories=list(meta["types"]))
    var = pd.DataFrame(index=pd.Index([str(g) for g in meta["genes"]], dtype=object))
    return AnnData(X=X, obs=obs, var=var)
