"""Saving and loading a trained attention mapper: one folder of three files.

``model.json`` (format, cellweave version, options, genes, types, view widths, training
parameters), ``arrays.npz`` (the principal axes of the candidate search) and ``weights.pt``
(the module's state). Saving is atomic (:func:`cellweave.io.atomic_dir`); loading never
unpickles objects (``torch.load(weights_only=True)``); a missing or corrupt file is one
:class:`~cellweave.errors.FileFormatError`.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ...errors import FileFormatError
from ...io import atomic_dir

__all__ = ["FORMAT", "read_model", "write_model"]

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
        np.savez(tmp / _ARRAYS, **arrays)
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
