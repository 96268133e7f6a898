"""Reading the command line's inputs: library warnings that explain a problem become the one
error line, the others are silenced.

anndata and mudata warn (and carry on) where the input is the problem: duplicated cell or
feature names, an ``.h5ad`` file renamed ``.h5mu``. The CLI prints exactly one line per error,
so :func:`read_input` refuses such files in one :class:`~cellweave.errors.InputError` line
naming the fix, and :func:`quiet_warnings` keeps every other library warning off stderr.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import io
from ..errors import CellweaveWarning, DuplicateNamesError, FileFormatError

__all__ = ["quiet_warnings", "read_input", "require_inputs"]

# reader -> function of cellweave.io (looked up when called)
_READERS = {
    "any": "read",
    "anndata": "read_anndata",
    "mudata": "read_mudata",
    "spatial": "read_spatial",
}

# HDF5 root "encoding-type" written by anndata / mudata -> (what it is, its extension)
_ENCODINGS = {"anndata": ("an AnnData", ".h5ad"), "mudata": ("a MuData", ".h5mu")}


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Silence library warnings while a command runs (the problems they point at are
    checked and reported as the error line instead); cellweave's own notes
    (:class:`~cellweave.errors.CellweaveWarning`) are printed as one
    ``cellweave: warning: ...`` line on stderr each."""
    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", CellweaveWarning)
        warnings.showwarning = _one_line_warning
        yield


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    import click

    click.echo(f"cellweave: warning: {' '.join(str(message).split())}", err=True)


def require_inputs(*paths: Path | None) -> None:
    """Refuse a missing input before anything else is checked or read."""
    for path in paths:
        if path is not None and not Path(path).expanduser().exists():
            raise FileFormatError(f"input file {path} does not exist: check the path and spelling")


def read_input(path: Path, *, reader: str = "anndata", **kwargs: Any) -> Any:
    """Read an input file with the ``reader`` of :mod:`cellweave.io` (``any``, ``anndata``,
    ``mudata``, ``spatial``), warnings silenced, then refuse duplicated names.

    An AnnData file named ``.h5mu`` (or a MuData named ``.h5ad``) that cannot be read is
    reported as such, with the rename that fixes it.

    Raises
    ------
    FileFormatError
        The file cannot be read (the message names a wrong extension when that is why).
    DuplicateNamesError
        Cell or feature names (of any modality) are not unique.
    """
    path = Path(path)
    try:
        with quiet_warnings():
            data = getattr(io, _READERS[reader])(path, **kwargs)
    except FileFormatError as err:
        hint = renamed_hint(path)
        if hint is None:
            raise
        raise FileFormatError(hint) from err
    check_names(data, path.name)
    return data


def renamed_hint(path: Path) -> str | None:
    """Why ``path`` failed to read when it is an HDF5 file written by the other library
    (an ``.h5ad`` renamed ``.h5mu`` or the reverse); ``None`` otherwise."""
    suffix = path.suffix.lower()
    if suffix not in (".h5ad", ".h5mu") or not path.is_file():
        return None
    try:
        import h5py

        with h5py.File(path, "r") as fh:
            encoding = fh.attrs.get("encoding-type", "")
    except Exception:  # not HDF5 at all: the reader's message stands
        return None
    encoding = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
    what, right = _ENCODINGS.get(encoding.lower(), (None, None))
    if what is None or right == suffix:
        return None
    return (
        f"{path} is {what} file named {suffix}: rename it to {path.with_suffix(right).name} "
        f"(the extension tells cellweave how to read it)"
    )


def check_names(data: Any, source: str) -> None:
    """Refuse duplicated cell names (of a MuData and each modality) or feature names."""
    tables = [("", data)] + [(f"[{k!r}]", v) for k, v in getattr(data, "mod", {}).items()]
    for where, table in tables:
        axes = ("obs",) if hasattr(table, "mod") else ("obs", "var")
        for axis in axes:
            names = getattr(table, f"{axis}_names")
            if names.is_unique:
                continue
            dups = list(names[names.duplicated()].unique()[:3])
            what = "cell" if axis == "obs" else "feature"
            raise DuplicateNamesError(
                f"{source}{where} has duplicated {what} names (e.g. {dups}): make them unique, "
                f"e.g. adata.{axis}_names_make_unique(), and save the file again"
            )
