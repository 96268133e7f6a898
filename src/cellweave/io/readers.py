"""Readers: AnnData, MuData, 10x HDF5 / MTX, counts tables, coordinates tables.

Every AnnData/MuData read is checked structurally (:func:`cellweave.validate.check_structure`)
before it is returned, so a corrupt or truncated file is refused in one line instead of
crashing later in scipy.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from anndata.utils import make_index_unique as ad_make_index_unique

from ..errors import DuplicateNamesError, FileFormatError, InputError, MissingKeyError
from ..validate import check_spatial, check_structure
from .visium import is_visium_folder, read_visium

__all__ = [
    "SUPPORTED_FORMATS",
    "read",
    "read_anndata",
    "read_coords",
    "read_mudata",
    "read_spatial",
]

PathLike = str | os.PathLike

#: What :func:`read` understands, as shown in error messages.
SUPPORTED_FORMATS = (
    ".h5ad (AnnData)",
    ".h5mu (MuData)",
    ".h5 (10x Genomics HDF5)",
    "10x MTX directory or matrix.mtx[.gz]",
    "Space Ranger outs/ folder (Visium)",
    ".csv/.tsv/.txt[.gz] (counts table, cells x genes)",
)

_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}
_COMPRESSED = (".gz",)

# Coordinate column names, by preference; each entry lists x, y[, z] (case-insensitive).
_COORD_COLUMNS = (
    ("x", "y", "z"),
    ("x", "y"),
    ("x_centroid", "y_centroid", "z_centroid"),
    ("x_centroid", "y_centroid"),
    ("center_x", "center_y", "center_z"),
    ("center_x", "center_y"),
    ("pxl_col_in_fullres", "pxl_row_in_fullres"),
    ("imagecol", "imagerow"),
    ("array_col", "array_row"),
    ("col", "row"),
    ("spatial_1", "spatial_2", "spatial_3"),
    ("spatial_1", "spatial_2"),
)


# --------------------------------------------------------------------------------------------
# paths and formats
# --------------------------------------------------------------------------------------------
def _suffix(path: Path) -> str:
    """Lower-case format suffix, looking past a compression suffix (``a.csv.gz`` -> ``.csv``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _existing(path: PathLike, what: str = "input file") -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileFormatError(f"{what} {path} does not exist: check the path and spelling")
    return path


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _kind(path: Path) -> str:
    """Name the reader for ``path``: ``h5ad``, ``h5mu``, ``10x_h5``, ``mtx`` or ``table``."""
    if path.is_dir():
        return "visium" if is_visium_folder(path) else "mtx"
    name = path.name.lower()
    if name.endswith((".mtx", ".mtx.gz")):
        return "mtx"
    suffix = _suffix(path)
    if suffix == ".h5ad" and not name.endswith(_COMPRESSED):
        return "h5ad"
    if suffix == ".h5mu" and not name.endswith(_COMPRESSED):
        return "h5mu"
    if suffix == ".h5" and not name.endswith(_COMPRESSED):
        return "10x_h5"
    if suffix in _TABLE_SUFFIXES:
        return "table"
    raise FileFormatError(
        f"cannot read {path}: unknown format {path.suffix or '(no extension)'!r}; cellweave "
        f"reads {', '.join(SUPPORTED_FORMATS)}; convert the file or give it the right extension"
    )


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------
def _read_h5ad(path: Path, backed: bool = False) -> AnnData:
    import anndata as ad

    # backed=None: fully in memory; "r": X stays on disk; either way the file is read-only
    return ad.read_h5ad(path, backed="r" if backed else None)


@contextlib.contextmanager
def _quiet_mudata() -> Iterator[None]:
    """Silence mudata's notice about its next version's ``update()`` (read and write)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"From 0\.4 \.update\(\)", category=FutureWarning)
        yield


def _read_h5mu(path: Path, backed: bool = False) -> Any:
    import mudata as md

    with _quiet_mudata():  # backed=False: fully in memory; "r": X on disk, read-only
        return md.read_h5mu(path, backed="r" if backed else False)


def _read_10x_h5(path: Path) -> AnnData:
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not unique.*")
        adata = sc.read_10x_h5(path)
    adata.var_names_make_unique()  # as read_10x_mtx does; IDs stay in var['gene_ids']
    return adata


def _first_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _read_mtx(path: Path) -> AnnData:
    """Read a 10x MTX folder (CellRanger v2 or v3, files gzipped or not).

    Like :func:`scanpy.read_10x_mtx`: cells are named by barcode, genes by symbol (made unique;
    the IDs go to ``var['gene_ids']``), and when 'Gene Expression' features are mixed with
    other feature types only those are kept.
    """
    from scipy.io import mmread

    folder = path if path.is_dir() else path.parent
    matrix = path if path.is_file() else _first_file(folder, ("matrix.mtx.gz", "matrix.mtx"))
    features = _first_file(folder, ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"))
    barcodes = _first_file(folder, ("barcodes.tsv.gz", "barcodes.tsv"))
    if matrix is None or features is None or barcodes is None:
        raise FileFormatError(
            f"{folder} is not a 10x MTX directory: it must hold matrix.mtx, features.tsv (or "
            "genes.tsv) and barcodes.tsv, each optionally .gz; point to the folder CellRanger "
            "wrote (e.g. filtered_feature_bc_matrix)"
        )
    X = sp.csr_matrix(mmread(matrix).T, dtype=np.float32)
    genes = pd.read_csv(features, header=None, sep="\t", dtype=str)
    cells = pd.read_csv(barcodes, header=None, sep="\t", dtype=str)
    if X.shape != (len(cells), len(genes)):
        raise FileFormatError(
            f"10x MTX directory {folder} is inconsistent: the matrix is {X.shape[1]} genes x "
            f"{X.shape[0]} cells, but {features.name} lists {len(genes)} genes and "
            f"{barcodes.name} {len(cells)} barcodes; re-export the folder"
        )
    var = pd.DataFrame({"gene_ids": genes[0].to_numpy()})
    symbols = genes[1] if genes.shape[1] > 1 else genes[0]
    var.index = ad_make_index_unique(pd.Index(symbols.to_numpy()))
    adata = AnnData(X=X, obs=pd.DataFrame(index=pd.Index(cells[0].to_numpy())), var=var)
    if genes.shape[1] > 2:
        adata.var["feature_types"] = genes[2].to_numpy()
        gex = (adata.var["feature_types"] == "Gene Expression").to_numpy()
        if gex.any() and not gex.all():
            adata = adata[:, gex].copy()
    return adata


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.name.lower().endswith(".gz") else open(path)


def _guess_sep(path: Path) -> str:
    """Separator from the extension, or sniffed from the first line for ``.txt``."""
    sep = _TABLE_SUFFIXES.get(_suffix(path))
    if sep is not None:
        return sep
    with _open_text(path) as fh:
        first = fh.readline()
    if "\t" in first:
        return "\t"
    if "," in first:
        return ","
    return r"\s+"


def _read_table(path: Path, *, sep: str | None, transpose: bool) -> AnnData:
    sep = sep if sep is not None else _guess_sep(path)
    df = pd.read_csv(path, sep=sep, index_col=0)
    if transpose:
        df = df.T
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise FileFormatError(
            f"counts table {path} has non-numeric column(s) {bad[:5]}: it must hold one row per "
            "cell (the cell name in the first column) and one numeric column per gene; pass "
            "transpose=True if genes are in rows, or sep=... if the separator is not "
            f"{sep!r}"
        )
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise FileFormatError(
            f"counts table {path} has {df.shape[0]} rows and {df.shape[1]} columns: it must "
            "hold one row per cell and one column per gene; check the separator (sep=...)"
        )
    X = sp.csr_matrix(df.to_numpy(dtype=np.float32))
    obs = pd.DataFrame(index=df.index.astype(str))
    var = pd.DataFrame(index=df.columns.astype(str))
    return AnnData(X=X, obs=obs, var=var)


_READERS = {
    "h5ad": ("AnnData (.h5ad)", _read_h5ad),
    "h5mu": ("MuData (.h5mu)", _read_h5mu),
    "10x_h5": ("10x Genomics HDF5", _read_10x_h5),
    "mtx": ("10x MTX", _read_mtx),
    "visium": ("Space Ranger outs/ folder", read_visium),
}


def read(
    path: PathLike,
    *,
    coords: PathLike | pd.DataFrame | None = None,
    spatial_key: str = "spatial",
    sep: str | None = None,
    transpose: bool = False,
    backed: bool = False,
) -> Any:
    """Read single-cell or spatial data from a file, choosing the reader from the extension.

    Parameters
    ----------
    path
        ``.h5ad`` (AnnData), ``.h5mu`` (MuData), ``.h5`` (10x Genomics HDF5), a 10x MTX
        directory or its ``matrix.mtx[.gz]``, a Space Ranger ``outs/`` folder (Visium:
        :func:`~cellweave.io.visium.read_visium`, laid out as ``scanpy.read_visium``), or a
        counts table ``.csv``/``.tsv``/``.txt``
        (optionally ``.gz``) with cells in rows, the cell name in the first column and one
        column per gene.
    coords
        Optional coordinates table (path or DataFrame) indexed by cell name, joined into
        ``obsm[spatial_key]``; see :func:`read_coords`. Only for AnnData.
    spatial_key
        Where in ``obsm`` to store ``coords``.
    sep
        Separator of a counts table (default: from the extension; sniffed for ``.txt``).
    transpose
        The counts table has genes in rows and cells in columns.
    backed
        ``.h5ad``/``.h5mu`` only: leave ``X`` (each modality's) on disk, opened read-only
        (``backed="r"`` of anndata / mudata), for data larger than memory.

    Returns
    -------
    AnnData, or MuData for ``.h5mu``, held fully in memory unless ``backed``. The file is
    opened read-only.

    Raises
    ------
    FileFormatError
        The file is missing, of an unknown format, cannot be read, or is corrupt or truncated
        (every sparse matrix is checked structurally, ``O(nnz)``, before it is returned).
    """
    path = _existing(path)
    kind = _kind(path)
    if backed and kind not in ("h5ad", "h5mu"):
        raise InputError(
            f"backed=True reads .h5ad or .h5mu files, not {path.name}: convert it with "
            "cellweave.io.write, or read it into memory (backed=False)"
        )
    try:
        if kind == "table":
            data = _read_table(path, sep=sep, transpose=transpose)
        elif backed:
            data = _READERS[kind][1](path, backed=True)
        else:
            data = _READERS[kind][1](path)
    except InputError:
        raise
    except Exception as err:
        label = "counts table" if kind == "table" else _READERS[kind][0]
        fix = "" if kind == "table" else "; if so, the file is corrupt or truncated: re-export it"
        raise FileFormatError(
            f"could not read {path} as {label} ({_one_line(err)}): check that the file is "
            f"complete and really is in that format{fix}"
        ) from err
    _check_read(data, path)
    if coords is not None:
        if not isinstance(data, AnnData):
            raise InputError(
                f"coords= can only be joined into AnnData, but {path} holds a "
                f"{type(data).__name__}: add coordinates to one modality instead, e.g. "
                "mdata['rna'].obsm['spatial'] = ..."
            )
        data.obsm[spatial_key] = _join_coords(data, coords)
    return data


def _check_read(data: Any, path: Path) -> None:
    """Refuse structurally unsound matrices (closing a backed file first)."""
    try:
        check_structure(data, source=path)
    except Exception as err:
        _close(data)
        if isinstance(err, InputError):
            raise
        raise FileFormatError(
            f"could not check the matrices of {path} ({_one_line(err)}): the file is corrupt "
            "or truncated: re-export it"
        ) from err


def _close(data: Any) -> None:
    """Close the file of a backed AnnData / MuData (nothing for in-memory data)."""
    with contextlib.suppress(Exception):
        if getattr(data, "isbacked", False):
            data.file.close()
    for adata in getattr(data, "mod", {}).values():
        with contextlib.suppress(Exception):
            if adata.isbacked:
                adata.file.close()


def _read_as(path: PathLike, cls: type, required: str, fix: str, **kwargs: Any) -> Any:
    """:func:`read`, then require an instance of ``cls`` (``required`` and ``fix`` complete
    the one-line error)."""
    data = read(path, **kwargs)
    if not isinstance(data, cls):
        raise FileFormatError(
            f"{path} holds a {type(data).__name__}, but {required} is required: {fix}"
        )
    return data


def read_anndata(path: PathLike, **kwargs: Any) -> AnnData:
    """Like :func:`read`, but require the file to hold an AnnData (not a MuData)."""
    fix = "pass a .h5ad file (or save one modality with mdata['rna'].write_h5ad(...))"
    return _read_as(path, AnnData, "a single-modality AnnData", fix, **kwargs)


def read_mudata(path: PathLike, **kwargs: Any) -> Any:
    """Like :func:`read`, but require the file to hold a MuData (a ``.h5mu`` file)."""
    from mudata import MuData

    fix = "pass a .h5mu file (build one with mudata.MuData({'rna': rna, 'atac': atac}).write(...))"
    return _read_as(path, MuData, "multi-modal MuData", fix, **kwargs)


def read_spatial(
    path: PathLike,
    *,
    coords: PathLike | pd.DataFrame | None = None,
    spatial_key: str = "spatial",
    **kwargs: Any,
) -> AnnData:
    """Read spatial data: like :func:`read_anndata`, then require ``obsm[spatial_key]``.

    Parameters
    ----------
    path, coords, spatial_key, kwargs
        As for :func:`read`.
    """
    adata = read_anndata(path, coords=coords, spatial_key=spatial_key, **kwargs)
    if spatial_key not in adata.obsm:
        keys = list(adata.obsm.keys())
        raise MissingKeyError(
            f"{path} has no spatial coordinates in obsm[{spatial_key!r}]: pass a coordinates "
            "table with coords=... (cell names in the first column, then x, y[, z]) or the "
            f"obsm key that holds them with spatial_key=... (obsm keys: {keys[:10]})"
        )
    check_spatial(adata, spatial_key=spatial_key)
    return adata


# --------------------------------------------------------------------------------------------
# coordinates
# --------------------------------------------------------------------------------------------
def _pick_coord_columns(df: pd.DataFrame, source: str) -> list[Any]:
    lower = {str(c).lower(): c for c in df.columns}
    for names in _COORD_COLUMNS:
        if all(n in lower for n in names):
            return [lower[n] for n in names]
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    if len(numeric) in (2, 3):
        return numeric
    raise FileFormatError(
        f"cannot tell which columns of {source} are coordinates (columns: "
        f"{[str(c) for c in df.columns][:10]}): name them x, y (and z), or keep only 2-3 "
        "numeric columns after the cell-name column"
    )


def read_coords(coords: PathLike | pd.DataFrame, *, sep: str | None = None) -> pd.DataFrame:
    """Read a table of spatial coordinates indexed by cell name.

    The first column holds cell names. Coordinate columns are found by name (case-insensitive:
    ``x``/``y``/``z``, ``x_centroid``/``y_centroid``, ``center_x``/``center_y``,
    ``pxl_col_in_fullres``/``pxl_row_in_fullres``, ``imagecol``/``imagerow``,
    ``array_col``/``array_row``, ``col``/``row``), else the table must have exactly 2 or 3
    numeric columns, taken in order as x, y[, z].

    Parameters
    ----------
    coords
        Path to a ``.csv``/``.tsv``/``.txt`` (optionally ``.gz``) file, or a DataFrame.
    sep
        Separator (default: from the extension, sniffed for ``.txt``).

    Returns
    -------
    DataFrame of float coordinates (2 or 3 columns), indexed by cell name (str).
    """
    if isinstance(coords, pd.DataFrame):
        df, source = coords, "the coordinates table"
    else:
        path = _existing(coords, "coordinates file")
        if path.is_dir() or _suffix(path) not in _TABLE_SUFFIXES:
            raise FileFormatError(
                f"cannot read coordinates from {path}: expected a .csv, .tsv or .txt table "
                "(optionally .gz) with cell names in the first column and x, y[, z] columns"
            )
        source = str(path)
        try:
            df = pd.read_csv(path, sep=sep if sep is not None else _guess_sep(path), index_col=0)
        except Exception as err:
            raise FileFormatError(
                f"could not read coordinates file {path} ({_one_line(err)}): it must be a "
                "table with cell names in the first column and x, y[, z] columns"
            ) from err
    cols = _pick_coord_columns(df, source)
    out = df[cols].astype(np.float64)
    out.index = out.index.astype(str)
    if not out.index.is_unique:
        dups = out.index[out.index.duplicated()].unique()
        raise DuplicateNamesError(
            f"{source} lists {len(dups)} cell name(s) more than once (e.g. "
            f"{list(dups[:5])}): keep one row of coordinates per cell"
        )
    return out


def _join_coords(adata: AnnData, coords: PathLike | pd.DataFrame) -> np.ndarray:
    """Coordinates of ``adata``'s cells from ``coords``, in ``adata.obs_names`` order."""
    table = read_coords(coords)
    source = "the coordinates table" if isinstance(coords, pd.DataFrame) else str(coords)
    if not adata.obs_names.is_unique:
        raise DuplicateNamesError(
            "the data have duplicated cell names, so coordinates cannot be matched by name: "
            "make them unique first (adata.obs_names_make_unique()) or add obsm['spatial'] "
            "yourself"
        )
    missing = adata.obs_names[~adata.obs_names.isin(table.index)]
    if len(missing) == adata.n_obs:
        raise InputError(
            f"none of the {adata.n_obs} cell names of the data appear in {source} (data: "
            f"{list(adata.obs_names[:3])}, coordinates: {list(table.index[:3])}): its first "
            "column must hold the same cell names (barcodes) as the counts"
        )
    if len(missing):
        raise InputError(
            f"{len(missing)} of {adata.n_obs} cells have no coordinates in {source} (e.g. "
            f"{list(missing[:5])}): add them, or subset the data to the cells with coordinates"
        )
    return table.loc[adata.obs_names].to_numpy()
