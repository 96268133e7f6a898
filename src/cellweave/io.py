"""Read and write single-cell and spatial data.

:func:`read` loads AnnData (``.h5ad``), MuData (``.h5mu``), 10x Genomics HDF5 (``.h5``) and MTX
(a directory or its ``matrix.mtx[.gz]``) output, and plain counts tables
(``.csv``/``.tsv``/``.txt``, optionally gzipped), always fully into memory and without
modifying the file. A separate coordinates table can be joined by cell name into
``obsm['spatial']``.

:func:`write` saves atomically: the data go to a temporary file next to the target, which is
renamed over it only once complete, so a crash never leaves a half-written file.
:func:`atomic_path` offers the same for any writer (figures, checkpoints).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from anndata.utils import make_index_unique as ad_make_index_unique

from .errors import DuplicateNamesError, FileFormatError, InputError, MissingKeyError
from .validate import check_spatial

__all__ = [
    "SUPPORTED_FORMATS",
    "atomic_path",
    "read",
    "read_anndata",
    "read_coords",
    "read_mudata",
    "read_spatial",
    "write",
]

PathLike = str | os.PathLike

#: What :func:`read` understands, as shown in error messages.
SUPPORTED_FORMATS = (
    ".h5ad (AnnData)",
    ".h5mu (MuData)",
    ".h5 (10x Genomics HDF5)",
    "10x MTX directory or matrix.mtx[.gz]",
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
        return "mtx"
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
def _read_h5ad(path: Path) -> AnnData:
    import anndata as ad

    return ad.read_h5ad(path)  # backed=None: fully in memory, file opened read-only


@contextlib.contextmanager
def _quiet_mudata() -> Iterator[None]:
    """Silence mudata's notice about its next version's ``update()`` (read and write)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"From 0\.4 \.update\(\)", category=FutureWarning)
        yield


def _read_h5mu(path: Path) -> Any:
    import mudata as md

    with _quiet_mudata():
        return md.read_h5mu(path)  # backed=False: fully in memory, file opened read-only


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
}


def read(
    path: PathLike,
    *,
    coords: PathLike | pd.DataFrame | None = None,
    spatial_key: str = "spatial",
    sep: str | None = None,
    transpose: bool = False,
) -> Any:
    """Read single-cell or spatial data from a file, choosing the reader from the extension.

    Parameters
    ----------
    path
        ``.h5ad`` (AnnData), ``.h5mu`` (MuData), ``.h5`` (10x Genomics HDF5), a 10x MTX
        directory or its ``matrix.mtx[.gz]``, or a counts table ``.csv``/``.tsv``/``.txt``
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

    Returns
    -------
    AnnData, or MuData for ``.h5mu``, held fully in memory. The file is opened read-only.

    Raises
    ------
    FileFormatError
        The file is missing, of an unknown format, or cannot be read.
    """
    path = _existing(path)
    kind = _kind(path)
    try:
        if kind == "table":
            data = _read_table(path, sep=sep, transpose=transpose)
        else:
            data = _READERS[kind][1](path)
    except InputError:
        raise
    except Exception as err:
        label = "counts table" if kind == "table" else _READERS[kind][0]
        raise FileFormatError(
            f"could not read {path} as {label} ({_one_line(err)}): check that the file is "
            "complete and really is in that format"
        ) from err
    if coords is not None:
        if not isinstance(data, AnnData):
            raise InputError(
                f"coords= can only be joined into AnnData, but {path} holds a "
                f"{type(data).__name__}: add coordinates to one modality instead, e.g. "
                "mdata['rna'].obsm['spatial'] = ..."
            )
        data.obsm[spatial_key] = _join_coords(data, coords)
    return data


def read_anndata(path: PathLike, **kwargs: Any) -> AnnData:
    """Like :func:`read`, but require the file to hold an AnnData (not a MuData)."""
    data = read(path, **kwargs)
    if not isinstance(data, AnnData):
        raise FileFormatError(
            f"{path} holds a {type(data).__name__}, but a single-modality AnnData is required: "
            "pass a .h5ad file (or save one modality with mdata['rna'].write_h5ad(...))"
        )
    return data


def read_mudata(path: PathLike) -> Any:
    """Like :func:`read`, but require the file to hold a MuData (a ``.h5mu`` file)."""
    from mudata import MuData

    data = read(path)
    if not isinstance(data, MuData):
        raise FileFormatError(
            f"{path} holds a {type(data).__name__}, but multi-modal MuData is required: pass a "
            ".h5mu file (build one with mudata.MuData({'rna': rna, 'atac': atac}).write(...))"
        )
    return data


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


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def _check_target(path: Path, *, overwrite: bool) -> None:
    if path.is_dir():
        raise FileFormatError(f"{path} is a directory: give a file name to write to")
    if path.exists() and not overwrite:
        raise FileFormatError(
            f"{path} already exists: pass overwrite=True (--overwrite on the command line) "
            "or choose another path"
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The temporary name ends with the target's full name (``.tmp-<random>-out.png``), so
    writers that infer the format from the extension work. If the block raises, the temporary
    file is removed and ``path`` is left untouched. Parent directories are created.

    Parameters
    ----------
    path
        The file to create.
    overwrite
        Replace ``path`` if it already exists (otherwise raise :class:`FileFormatError`).

    Examples
    --------
    >>> with atomic_path("figures/umap.png", overwrite=True) as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp)
    """
    path = Path(path).expanduser()
    _check_target(path, overwrite=overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileFormatError(
            f"cannot create the folder {path.parent} ({_one_line(err)}): choose an output path "
            "in a writable folder"
        ) from err
    tmp = path.parent / f".tmp-{secrets.token_hex(6)}-{path.name}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileFormatError(f"nothing was written to {path}: the writer created no file")
        if tmp.is_file():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        _check_target(path, overwrite=overwrite)  # it may have appeared meanwhile
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _expect_suffix(path: Path, allowed: tuple[str, ...], what: str) -> None:
    if not path.name.lower().endswith(allowed):
        raise FileFormatError(
            f"cannot write {what} to {path}: its extension must be {' or '.join(allowed)}; "
            f"rename the output, e.g. {path.stem}{allowed[0]}"
        )


def write(
    data: Any,
    path: PathLike,
    *,
    overwrite: bool = False,
    compression: str | None = "gzip",
) -> Path:
    """Write data atomically to ``path``.

    Parameters
    ----------
    data
        AnnData (to ``.h5ad``), MuData (to ``.h5mu``) or a pandas DataFrame (to ``.csv``,
        ``.tsv``, optionally ``.gz``; the index is written as the first column).
    path
        Output file; parent directories are created.
    overwrite
        Replace an existing file (otherwise raise :class:`FileFormatError`).
    compression
        HDF5 dataset compression for AnnData/MuData (``"gzip"``, ``"lzf"`` or ``None``).

    Returns
    -------
    The path written.
    """
    from mudata import MuData

    path = Path(path).expanduser()
    if isinstance(data, MuData):
        _expect_suffix(path, (".h5mu",), "MuData")
        with atomic_path(path, overwrite=overwrite) as tmp, _quiet_mudata():
            data.write_h5mu(tmp, compression=compression)
    elif isinstance(data, AnnData):
        _expect_suffix(path, (".h5ad",), "AnnData")
        with atomic_path(path, overwrite=overwrite) as tmp:
            data.write_h5ad(tmp, compression=compression)
    elif isinstance(data, pd.DataFrame):
        allowed = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
        _expect_suffix(path, allowed, "a table")
        sep = "\t" if _suffix(path) == ".tsv" else ","
        with atomic_path(path, overwrite=overwrite) as tmp:
            data.to_csv(tmp, sep=sep)  # compression inferred from the name (tmp ends like path)
    else:
        raise InputError(
            f"cannot write a {type(data).__name__}: write accepts AnnData (.h5ad), MuData "
            "(.h5mu) or a pandas DataFrame (.csv/.tsv)"
        )
    return path
