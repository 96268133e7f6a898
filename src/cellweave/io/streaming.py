"""Streaming from disk: when to read a file backed, rows in blocks, a dense layer written in
blocks.

:func:`dense_nbytes` reads only the shapes of a ``.h5ad``/``.h5mu`` file's ``X`` matrices
(HDF5 attributes, nothing else) and gives their size as dense float32; :func:`use_backed`
turns the CLI's ``--backed/--no-backed`` (default: automatic) into a decision: automatic
streams when that size exceeds the command's measured :data:`THRESHOLDS`.
:func:`row_blocks` reads a matrix (in memory or backed) in blocks of consecutive rows;
:func:`write_with_layer` writes an AnnData atomically (as :func:`cellweave.io.write`) plus
one dense layer filled block by block, so neither the input nor the output matrix is ever
whole in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from anndata import AnnData
from scipy import sparse

from ..errors import FileFormatError
from .readers import PathLike, _existing, _kind, _one_line
from .writing import _expect_suffix, atomic_path

__all__ = [
    "BACKED_THRESHOLD",
    "READ_BLOCK",
    "THRESHOLDS",
    "dense_nbytes",
    "row_blocks",
    "use_backed",
    "write_with_layer",
]

#: Dense float32 size of the input's ``X`` matrices above which ``--backed`` turns on by
#: itself, per command (``BACKED_THRESHOLD`` for any other caller). Measured
#: (``benchmarks/results/scale.md``): in memory, ``impute --method mf`` peaked at 3.0 GB on
#: 100,000 spots x 500 genes (0.19 GiB dense, about 14x plus 0.4 GB of imports: dense
#: proportions in float64), backed at 1.2 GB; so it streams above 0.5 GiB, where the
#: in-memory run would pass ~7 GB. ``integrate`` in memory peaked at 0.93 GB on 20,000
#: cells x (2,000 genes + 5,000 peaks) (0.36 GiB dense: the CSR and encoder inputs, about
#: 1.2x plus 0.5 GB), backed at 0.75 GB; it streams above 4 GiB (~5.5 GB in memory).
THRESHOLDS = {"impute": 2**29, "integrate": 4 * 2**30}
BACKED_THRESHOLD = THRESHOLDS["impute"]

#: Rows read at once when streaming a matrix from disk.
READ_BLOCK = 20_000


def _x_shapes(path: Path) -> list[tuple[int, int]]:
    """Shapes of the ``X`` matrices of an ``.h5ad`` (one) or ``.h5mu`` (one per modality)."""
    import h5py

    def shape_of(node: Any) -> tuple[int, int]:
        if isinstance(node, h5py.Dataset):
            return tuple(int(s) for s in node.shape)  # type: ignore[return-value]
        return tuple(int(s) for s in node.attrs["shape"])  # type: ignore[return-value]

    with h5py.File(path, "r") as f:
        if "mod" in f:
            return [shape_of(f["mod"][name]["X"]) for name in f["mod"] if "X" in f["mod"][name]]
        return [shape_of(f["X"])] if "X" in f else []


def dense_nbytes(path: PathLike) -> int:
    """Size in bytes of the file's ``X`` matrices as dense float32 (shapes read only).

    Parameters
    ----------
    path
        A ``.h5ad`` or ``.h5mu`` file.

    Returns
    -------
    ``sum(n_obs * n_vars * 4)`` over ``X`` (each modality's for ``.h5mu``); ``0`` for other
    formats, which are always read into memory.
    """
    path = _existing(path)
    if _kind(path) not in ("h5ad", "h5mu"):
        return 0
    try:
        shapes = _x_shapes(path)
    except Exception as err:
        raise FileFormatError(
            f"could not read the matrix shapes of {path} ({_one_line(err)}): the file is "
            "corrupt or truncated: re-export it"
        ) from err
    return int(sum(4 * n * m for n, m in shapes))


def use_backed(
    path: PathLike, backed: bool | None, *, threshold: int | str | None = None
) -> tuple[bool, str | None]:
    """Whether to read ``path`` backed, and the one line that says so when it was automatic.

    Parameters
    ----------
    path
        The input file.
    backed
        ``True``/``False``: as given; ``None``: automatic, backed when the file is an
        ``.h5ad``/``.h5mu`` whose :func:`dense_nbytes` exceeds ``threshold``.
    threshold
        Bytes, or a command of :data:`THRESHOLDS` (``"impute"``, ``"integrate"``); default
        :data:`BACKED_THRESHOLD`.

    Returns
    -------
    ``(backed, note)``: ``note`` is a one-line message when the automatic choice turned
    streaming on, else ``None``.
    """
    if backed is not None:
        return bool(backed), None
    if threshold is None:
        limit = BACKED_THRESHOLD
    elif isinstance(threshold, str):
        limit = THRESHOLDS[threshold]
    else:
        limit = int(threshold)
    size = dense_nbytes(path)
    if size <= limit:
        return False, None
    note = (
        f"streaming {Path(path).name} from disk (--backed): its matrices are "
        f"{size / 2**30:.1f} GiB dense, above {limit / 2**30:.1f} GiB; pass --no-backed to "
        "read it into memory"
    )
    return True, note


def row_blocks(
    X: Any, *, step: int | None = None, rows: slice | None = None
) -> Iterator[tuple[int, sparse.csr_matrix]]:
    """``(start, CSR float32 block)`` of consecutive rows of ``X`` (in memory or backed).

    Parameters
    ----------
    X
        A matrix (dense, scipy sparse, or a backed AnnData dataset).
    step
        Rows per block (default :data:`READ_BLOCK`).
    rows
        Only these rows (a ``slice`` with step 1; default all).
    """
    step = READ_BLOCK if step is None else int(step)
    start, stop, _ = (rows or slice(None)).indices(X.shape[0])
    for a in range(start, stop, step):
        b = min(a + step, stop)
        yield a, sparse.csr_matrix(X[a:b], dtype=np.float32)


def write_with_layer(
    adata: AnnData,
    path: PathLike,
    *,
    layer: str,
    n_vars: int,
    blocks: Callable[[], Iterator[tuple[int, np.ndarray]]],
    overwrite: bool = False,
    dtype: Any = np.float32,
) -> Path:
    """Write ``adata`` atomically to ``.h5ad`` with ``layers[layer]`` filled block by block.

    The AnnData is written first (a backed one copies its ``X`` from its file), then the
    dense layer ``(n_obs, n_vars)`` is created in the same temporary file and each block
    ``blocks()`` yields (``(first row, rows)``) is written where it belongs; the file is
    renamed into place only when complete (see :func:`cellweave.io.atomic_path`).

    Parameters
    ----------
    adata
        The AnnData (in memory or backed; ``layers[layer]`` must not be set).
    path
        Output ``.h5ad``.
    layer, n_vars
        Name and width of the layer.
    blocks
        Called once: an iterator of ``(start, array)`` covering every row.
    overwrite
        Replace an existing file.
    dtype
        Dtype of the layer on disk.
    """
    import h5py

    path = Path(path).expanduser()
    _expect_suffix(path, (".h5ad",), "AnnData")
    n_obs = adata.n_obs
    chunk_rows = max(1, min(n_obs, 2**20 // max(n_vars, 1)))
    with atomic_path(path, overwrite=overwrite) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
        with h5py.File(tmp, "r+") as f:
            group = f.require_group("layers")
            if "encoding-type" not in group.attrs:
                group.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
            out = group.create_dataset(
                layer,
                shape=(n_obs, n_vars),
                dtype=dtype,
                chunks=(chunk_rows, n_vars) if n_obs and n_vars else None,
                compression="gzip",
            )
            out.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
            filled = 0
            for start, block in blocks():
                out[start : start + block.shape[0]] = np.asarray(block, dtype=dtype)
                filled += block.shape[0]
            if filled != n_obs:
                raise RuntimeError(f"{filled} of {n_obs} rows of layers[{layer!r}] written")
    return path
