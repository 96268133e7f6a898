"""Output paths checked up front: the right kind, writable, not an input, not taken.

A command that trains for an hour must not find out at the end that its output ends in
``.h5mu`` instead of ``.h5ad``, sits in a read-only folder, or names a folder.
:func:`check_output_path` answers all of that before any file is read, in one
:class:`~cellweave.errors.FileFormatError` line naming the path, the problem and the fix;
:func:`check_distinct` refuses two outputs of one run that are the same file.

Kinds (``kind=``):

========== ===================================================================
``h5ad``   an AnnData file: ``.h5ad``
``h5mu``   a MuData file: ``.h5mu``
``figure`` an image matplotlib writes: ``.png``, ``.pdf``, ``.svg``, ...
``file``   any other file (JSON, tables): any name that is not a folder
``folder`` a folder (created if absent; an existing one must be writable)
``new_folder`` a folder written whole (a saved model): an existing non-empty one only with
           ``overwrite``
========== ===================================================================
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import FileFormatError

__all__ = ["FIGURE_SUFFIXES", "OUTPUT_KINDS", "check_distinct", "check_output_path", "h5_kind"]

#: Image formats matplotlib's Agg/vector backends write (``savefig`` infers it from the name).
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".tif", ".tiff", ".eps")
FIGURE_SUFFIXES += (".ps", ".webp")

#: Output kinds and the file-name endings each accepts (``None``: any name).
OUTPUT_KINDS: dict[str, tuple[str, ...] | None] = {
    "h5ad": (".h5ad",),
    "h5mu": (".h5mu",),
    "figure": FIGURE_SUFFIXES,
    "file": None,
    "folder": None,
    "new_folder": None,
}
_FOLDERS = ("folder", "new_folder")

_WHAT = {
    "h5ad": "an AnnData file",
    "h5mu": "a MuData file",
    "figure": "a figure",
    "file": "a file",
    "folder": "a folder",
    "new_folder": "a folder",
}


def h5_kind(input_path: str | os.PathLike) -> str:
    """The output kind that holds what an input holds: ``h5mu`` for a ``.h5mu`` input, else
    ``h5ad`` (every other format is read as an AnnData)."""
    return "h5mu" if str(input_path).lower().endswith(".h5mu") else "h5ad"


def _writable(folder: Path) -> bool:
    """Whether new entries can be created in ``folder`` (write and search permission; a
    read-only file system counts as not writable)."""
    return os.access(folder, os.W_OK | os.X_OK)


def _nearest_existing(path: Path) -> Path:
    """``path``'s closest ancestor that exists (the folder a new output would be made in)."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(".")  # pragma: no cover - a relative path's parents end in "."


def _check_suffix(path: Path, kind: str, label: str) -> None:
    allowed = OUTPUT_KINDS[kind]
    if allowed is None or path.name.lower().endswith(allowed):
        return
    shown = " or ".join(allowed[:3]) + (" ..." if len(allowed) > 3 else "")
    stem = path.name.split(".")[0] or "output"
    raise FileFormatError(
        f"{label} {path} must be {_WHAT[kind]} ending in {shown}: rename it, e.g. "
        f"{path.with_name(stem + allowed[0])}"
    )


def _check_existing(path: Path, kind: str, label: str, overwrite: bool) -> None:
    if kind in _FOLDERS:
        if not path.is_dir():
            raise FileFormatError(f"{label} {path} is a file, not a folder: give a folder name")
        if kind == "new_folder" and not overwrite and any(path.iterdir()):
            raise FileFormatError(
                f"{label} {path} exists and is not empty: pass --overwrite or another folder"
            )
        return
    if path.is_dir():
        raise FileFormatError(f"{label} {path} is a folder: give a file name to write to")
    if not overwrite:
        raise FileFormatError(f"{label} {path} already exists: pass --overwrite or another path")


def check_output_path(
    path: str | os.PathLike,
    *,
    kind: str,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    label: str = "output",
) -> Path:
    """Check, before any work, that ``path`` can be written as ``kind``.

    Refused, each in one line: an output that is one of ``inputs`` (inputs are never
    modified), the wrong extension for ``kind``, a file where a folder is expected or the
    reverse, an existing file without ``overwrite``, a parent that is a file, and a folder
    (the nearest existing one, where missing folders would be created) without write
    permission. Nothing is created.

    Parameters
    ----------
    path
        The output.
    kind
        One of :data:`OUTPUT_KINDS`: ``h5ad``, ``h5mu``, ``figure``, ``file``, ``folder`` or
        ``new_folder``.
    inputs
        Input paths the output must not be.
    overwrite
        Whether an existing file may be replaced.
    label
        How to call the path in messages (e.g. ``"--plot"``).

    Returns
    -------
    ``path`` as a :class:`~pathlib.Path` (``~`` expanded).

    Raises
    ------
    FileFormatError
        The path cannot be written as asked; the message names the fix.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}; use one of {list(OUTPUT_KINDS)}")
    path = Path(path).expanduser()
    for item in inputs:
        item = Path(item).expanduser()
        if item.exists() and path.exists() and path.resolve() == item.resolve():
            raise FileFormatError(
                f"{label} {path} is an input file: cellweave never modifies its input; "
                "choose another output path"
            )
    _check_suffix(path, kind, label)
    if path.exists():
        _check_existing(path, kind, label, overwrite)
        folder = path if kind in _FOLDERS else path.parent
    else:
        folder = _nearest_existing(path)
    if not folder.is_dir():
        raise FileFormatError(
            f"{label} {path} cannot be created: {folder} is a file, not a folder; choose "
            "another path"
        )
    if not _writable(folder):
        raise FileFormatError(
            f"{label} {path} cannot be written: the folder {folder} has no write permission; "
            "choose an output in a writable folder"
        )
    return path


def check_distinct(outputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Refuse two outputs of one run that are the same path (``{label: path}``; ``None``
    entries are ignored)."""
    seen: dict[Path, str] = {}
    for label, path in outputs.items():
        if path is None:
            continue
        key = Path(os.path.abspath(Path(path).expanduser()))
        if key in seen:
            raise FileFormatError(
                f"{label} and {seen[key]} are the same path {path}: give each output its own name"
            )
        seen[key] = label
