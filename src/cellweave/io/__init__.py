"""Read and write single-cell and spatial data.

:func:`read` loads AnnData (``.h5ad``), MuData (``.h5mu``), 10x Genomics HDF5 (``.h5``) and MTX
(a directory or its ``matrix.mtx[.gz]``) output, Space Ranger ``outs/`` folders (Visium,
:func:`read_visium`, as ``scanpy.read_visium`` lays them out), and plain counts tables
(``.csv``/``.tsv``/``.txt``, optionally gzipped), fully into memory (or, for ``.h5ad``/``.h5mu``,
``backed``) and without modifying the file. A separate coordinates table can be joined by cell
name into ``obsm['spatial']``. Every matrix read is checked structurally first: a corrupt or
truncated file is one :class:`~cellweave.errors.FileFormatError` line, never a crash.

:func:`write` saves atomically: the data go to a temporary file next to the target, which is
renamed over it only once complete, so a crash never leaves a half-written file.
:func:`atomic_path` offers the same for any writer (figures, checkpoints), :func:`atomic_dir`
for a folder (a saved model).

Streaming (``streaming.py``): :func:`use_backed` decides ``--backed`` (automatic above
the measured :data:`THRESHOLDS` of dense input), :func:`row_blocks` reads rows in blocks and
:func:`write_with_layer` writes a dense layer block by block.

Layout: ``readers.py`` (formats, :func:`read` and friends, coordinates), ``writing.py``
(temporary names, stale temporaries, :func:`atomic_path`, :func:`atomic_dir`, :func:`write`),
``paths.py`` (:func:`check_output_path`: an output's kind, extension and folder checked up front).
"""

from __future__ import annotations

import importlib as _importlib
from typing import Any as _Any

#: Public name -> the submodule that defines it, imported on first access (so that
#: ``cellweave --help`` does not load anndata, pandas and h5py).
_WHERE = {
    name: module
    for module, names in {
        "paths": "check_distinct check_output_path h5_kind",
        "readers": "SUPPORTED_FORMATS read read_anndata read_coords read_mudata read_spatial",
        "streaming": "BACKED_THRESHOLD READ_BLOCK THRESHOLDS dense_nbytes row_blocks use_backed "
        "write_with_layer",
        "visium": "read_10x_h5 read_visium",
        "writing": "atomic_dir atomic_path remove_stale_temps temp_sibling write",
    }.items()
    for name in names.split()
}


def __getattr__(name: str) -> _Any:
    if name in _WHERE:
        value = getattr(_importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "BACKED_THRESHOLD",
    "READ_BLOCK",
    "SUPPORTED_FORMATS",
    "THRESHOLDS",
    "atomic_dir",
    "atomic_path",
    "check_distinct",
    "check_output_path",
    "dense_nbytes",
    "h5_kind",
    "read",
    "read_10x_h5",
    "read_anndata",
    "read_coords",
    "read_mudata",
    "read_spatial",
    "read_visium",
    "remove_stale_temps",
    "row_blocks",
    "temp_sibling",
    "use_backed",
    "write",
    "write_with_layer",
]
