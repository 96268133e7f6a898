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
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from .. import __version__
from .._params import jsonable
from ..errors import FileFormatError
from ..io import atomic_dir
from .config import MODEL

__all__ = ["FORMAT", "history_entry", "history_frame", "load_state", "read_model", "write_model"]

_WEIGHTS, _ARRAYS, _META, _GRAPH = "weights.pt", "representation.npz", "model.json", "graph.npz"
_FILES = (_META, _ARRAYS, _GRAPH, _WEIGHTS)
#: Prefix in representation.npz of the optional latent and label codes of labelled training
#: cells (query label transfer; :mod:`.query`).
_REFERENCE = "__reference__/"
#: The keys of ``model.json`` (all required but ``cellweave_version`` and ``train_params``),
#: the data keys of ``init_params`` besides :data:`~.config.MODEL`'s options, and the keys
#: of each modality's ``fitted`` entry.
_META_KEYS = (
    "format",
    "cellweave_version",
    "init_params",
    "train_params",
    "history",
    "batch_names",
    "label_classes",
    "fitted",
    "query",
)
#: The keys model.json must hold (format, version, train parameters and history are read
#: with defaults when absent).
_REQUIRED_KEYS = tuple(k for k in _META_KEYS[2:] if k not in ("train_params", "history", "query"))
_DATA_KEYS = ("batch_key", "label_key", "graph_key", "modality")
_FITTED_KEYS = ("kind", "likelihood", "representation", "n_comps", "features")
#: What a problem reading a model's file is fixed by.
_RESAVE = "save the model again with model.save(path), or copy the whole folder again"
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
    reference: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a model's folder atomically (``meta``: parameters, batches, classes; ``fitted``:
    :meth:`~.data.MosaicData.fitted_state`; ``state``: the module's ``state_dict``;
    ``reference``: ``{"latent", "labels"}`` of labelled cells, kept in representation.npz).

    An existing non-empty folder is replaced only with ``overwrite``, and only if it holds a
    saved model and nothing else (other files would be lost with it)."""
    with atomic_dir(path, overwrite=overwrite, replaceable=_FILES) as tmp:
        arrays = {
            f"{mod}/{key}": value
            for mod, info in fitted.items()
            for key, value in info.pop("arrays").items()
        }
        arrays.update({_REFERENCE + k: v for k, v in (reference or {}).items()})
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


def history_entry(history: pd.DataFrame) -> dict[str, list]:
    """The training history as ``model.json`` keeps it: ``{column: values}`` with ``epoch``
    first (NaN as ``null``)."""
    return jsonable(history.reset_index().to_dict(orient="list"))


def history_frame(entry: Mapping[str, list]) -> pd.DataFrame:
    """The DataFrame of a :func:`history_entry` (index ``epoch``; ``null`` back to NaN)."""
    frame = pd.DataFrame(dict(entry))
    frame = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    if "epoch" in frame.columns:
        frame = frame.set_index(frame.pop("epoch").astype(int))
    return frame


def read_model(path: str | Path, *, strict: bool = False) -> dict[str, Any]:
    """A saved model's ``meta`` (``model.json``), ``fitted`` state with its arrays,
    ``batch_names``, ``label_classes``, ``graph`` (``None`` when it had none) and ``state``.

    A missing, truncated or unreadable file is one :class:`~cellweave.errors.FileFormatError`
    naming the file and the fix; with ``strict`` (what :meth:`MosaicModel.load` asks) so is
    a ``model.json`` with a missing or unknown key."""
    path = Path(path)
    for name in _FILES:
        if not (path / name).exists():
            raise FileFormatError(f"{path / name} is missing: {path} is not a saved model")
    meta = _read(path / _META, lambda f: json.loads(f.read_text()))
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path / _META} holds no JSON object: {_RESAVE}")
    if meta.get("format", 1) != FORMAT:
        raise FileFormatError(
            f"{path} holds a model of format {meta.get('format', 1)} (cellweave "
            f"{meta.get('cellweave_version', '?')}); this cellweave reads format {FORMAT}: "
            "train the model again"
        )
    if strict:
        _check_meta(meta, path / _META)
    arrays = _read(path / _ARRAYS, _load_npz)
    fitted = meta["fitted"]
    for mod, info in fitted.items():
        prefix = f"{mod}/"
        info["arrays"] = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    graph = _read(path / _GRAPH, sparse.load_npz)
    state = _read(path / _WEIGHTS, _load_weights)
    reference = {k[len(_REFERENCE) :]: v for k, v in arrays.items() if k.startswith(_REFERENCE)}
    return {
        "reference": reference or None,
        "meta": meta,
        "fitted": fitted,
        "batch_names": meta["batch_names"],
        "label_classes": meta["label_classes"],
        "graph": graph if graph.shape[0] else None,
        "state": state,
    }


def _load_npz(file: Path) -> dict[str, np.ndarray]:
    with np.load(file) as npz:
        return {k: npz[k] for k in npz.files}


def _load_weights(file: Path) -> Any:
    return torch.load(file, map_location="cpu", weights_only=True)


def _read(file: Path, reader: Callable[[Path], Any]) -> Any:
    """``reader(file)``, any failure to parse it one :class:`FileFormatError`."""
    try:
        return reader(file)
    except (OSError, ValueError, EOFError, RuntimeError, KeyError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileFormatError(
            f"{file} cannot be read, it is truncated or corrupt ({first}): {_RESAVE}"
        ) from None


def _check_meta(meta: dict[str, Any], file: Path) -> None:
    """Every key ``model.json`` needs is there and no other (a key this cellweave does not
    know would be ignored or misread)."""
    init = meta.get("init_params")
    fitted = meta.get("fitted")
    problems = [
        ("missing key", [k for k in _REQUIRED_KEYS if k not in meta]),
        ("unknown key", [k for k in meta if k not in _META_KEYS]),
    ]
    if isinstance(init, dict):
        known = (*MODEL.options, *_DATA_KEYS)
        problems.append(("unknown init_params key", [k for k in init if k not in known]))
    if isinstance(fitted, dict):
        problems.append(
            (
                "fitted entry that is not an object",
                [m for m, info in fitted.items() if not isinstance(info, dict)],
            )
        )
        problems.append(
            (
                "unknown fitted key",
                [
                    k
                    for info in fitted.values()
                    if isinstance(info, dict)
                    for k in info
                    if k not in _FITTED_KEYS
                ],
            )
        )
    for what, keys in problems:
        if keys:
            raise FileFormatError(
                f"{file} has {len(keys)} {what}(s) ({', '.join(map(repr, keys[:5]))}): it was "
                f"not written by this cellweave's model.save or was edited; {_RESAVE}"
            )
    if not isinstance(init, dict) or not isinstance(fitted, dict):
        raise FileFormatError(f"{file} lacks init_params or fitted entries: {_RESAVE}")


def load_state(module: torch.nn.Module, state: Mapping[str, Any], path: str | Path) -> None:
    """Load the saved weights into ``module``; weights of another shape or set of layers
    (a ``model.json`` that does not fit its ``weights.pt``) are one :class:`FileFormatError`."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise FileFormatError(
            f"{Path(path) / _WEIGHTS} does not fit the model described by "
            f"{Path(path) / _META} ({detail[:200]}): {_RESAVE}"
        ) from None
