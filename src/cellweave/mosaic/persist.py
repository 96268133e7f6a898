"""Saving and loading a trained mosaic model: one folder of four files.

``model.json`` (format, cellweave version, init and training parameters, batches, label
classes, each modality's fitted state), ``representation.npz`` (the fitted encoder-input
arrays), ``graph.npz`` (the guidance graph) and ``weights.pt`` (the module's state).

Saving is atomic (:func:`cellweave.io.atomic_dir`): the folder is written as a temporary
sibling and renamed into place, so a crash or kill mid-save leaves the old model or none,
never half of one. Loading never unpickles objects (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import sparse

from .. import __version__
from ..errors import FileFormatError
from ..io import atomic_dir

__all__ = ["FORMAT", "read_model", "write_model"]

_WEIGHTS, _ARRAYS, _META, _GRAPH = "weights.pt", "representation.npz", "model.json", "graph.npz"
_FILES = (_META, _ARRAYS, _GRAPH, _WEIGHTS)
#: Version of the saved layout and of what the weights mean; 2: protein decoded as absolute
#: counts (a format-1 protein decoder's weights would decode wrongly), bump on any such change.
FORMAT = 2


def write_model(
    path: str | Path,
    meta: Mapping[str, Any],
    *,
    fitted: dict[str, Any],
    graph: sparse.spmatrix | None,
    state: Mapping[str, torch.Tensor],
    overwrite: bool = False,
) -> Path:
    """Write a model's folder atomically (``meta``: parameters, batches, classes; ``fitted``:
    :meth:`~.data.MosaicData.fitted_state`; ``state``: the module's ``state_dict``).

    An existing non-empty folder is replaced only with ``overwrite``, and only if it holds a
    saved model and nothing else (other files would be lost with it)."""
    with atomic_dir(path, overwrite=overwrite, replaceable=_not_a_model) as tmp:
        arrays = {
            f"{mod}/{key}": value
            for mod, info in fitted.items()
            for key, value in info.pop("arrays").items()
        }
        meta = {"format": FORMAT, "cellweave_version": __version__, **meta, "fitted": fitted}
        graph = graph if graph is not None else sparse.csr_matrix((0, 0))
        _write_files(tmp, meta, arrays, sparse.csr_matrix(graph), state)
    return Path(path).expanduser()


def _write_files(
    folder: Path,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    graph: sparse.csr_matrix,
    state: Mapping[str, torch.Tensor],
) -> None:
    """The four files of a model folder, written into ``folder``."""
    (folder / _META).write_text(json.dumps(meta, indent=1))
    np.savez(folder / _ARRAYS, **arrays)
    sparse.save_npz(folder / _GRAPH, graph)
    torch.save(state, folder / _WEIGHTS)


def _not_a_model(folder: Path) -> str | None:
    """Why ``folder`` must not be replaced by a model (``None``: it holds a model only)."""
    others = sorted(p.name for p in folder.iterdir() if p.name not in _FILES)
    if others:
        return (
            f"it holds files that are not part of a saved model ({', '.join(others[:5])}): "
            "save the model to a new or empty folder"
        )
    return None


def read_model(path: str | Path) -> dict[str, Any]:
    """A saved model's ``meta`` (``model.json``), ``fitted`` state with its arrays,
    ``batch_names``, ``label_classes``, ``graph`` (``None`` when it had none) and ``state``."""
    path = Path(path)
    for name in _FILES:
        if not (path / name).exists():
            raise FileFormatError(f"{path / name} is missing: {path} is not a saved model")
    meta = json.loads((path / _META).read_text())
    if meta.get("format", 1) != FORMAT:
        raise FileFormatError(
            f"{path} holds a model of format {meta.get('format', 1)} (cellweave "
            f"{meta.get('cellweave_version', '?')}); this cellweave reads format {FORMAT}: "
            "train the model again"
        )
    with np.load(path / _ARRAYS) as npz:
        arrays = {k: npz[k] for k in npz.files}
    fitted = meta["fitted"]
    for mod, info in fitted.items():
        prefix = f"{mod}/"
        info["arrays"] = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    graph = sparse.load_npz(path / _GRAPH)
    return {
        "meta": meta,
        "fitted": fitted,
        "batch_names": meta["batch_names"],
        "label_classes": meta["label_classes"],
        "graph": graph if graph.shape[0] else None,
        "state": torch.load(path / _WEIGHTS, map_location="cpu", weights_only=True),
    }
