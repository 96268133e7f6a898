"""Space Ranger ``outs/`` folders (10x Visium) into AnnData, laid out as ``scanpy.read_visium``.

The folder holds ``filtered_feature_bc_matrix.h5`` (10x HDF5, read here with h5py; the MTX
folder ``filtered_feature_bc_matrix/`` is used when the ``.h5`` is absent) and ``spatial/``:
``tissue_positions.csv`` (Space Ranger 2+, with a header) or ``tissue_positions_list.csv``
(1.x, no header), ``scalefactors_json.json`` and the ``tissue_hires_image.png`` /
``tissue_lowres_image.png`` images. The result is what :func:`scanpy.read_visium` gives,
feature names made unique:

- ``X``: spots x genes counts (CSR float32), only 'Gene Expression' features;
- ``obs``: ``in_tissue``, ``array_row``, ``array_col`` (barcodes as names);
- ``var``: ``gene_ids``, ``feature_types`` and the other feature fields (``genome``);
- ``obsm["spatial"]``: full-resolution pixel coordinates, ``x`` = column, ``y`` = row (what
  :func:`scanpy.pl.spatial` draws over the image);
- ``uns["spatial"][library_id]``: ``images`` (``hires`` / ``lowres``, float arrays as
  :func:`matplotlib.image.imread` reads them), ``scalefactors`` (the JSON) and ``metadata``
  (``chemistry_description``, ``software_version``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import CellweaveWarning, FileFormatError

__all__ = ["COUNT_FILE", "is_visium_folder", "read_visium"]

PathLike = str | os.PathLike

#: The count matrix of a Space Ranger ``outs/`` folder.
COUNT_FILE = "filtered_feature_bc_matrix.h5"
_POSITIONS = ("tissue_positions.csv", "tissue_positions_list.csv")
_SCALEFACTORS = "scalefactors_json.json"
_IMAGES = {"hires": "tissue_hires_image.png", "lowres": "tissue_lowres_image.png"}
_POSITION_COLUMNS = (
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
)
_FEATURE_FIELDS_SKIPPED = ("name", "feature_type", "id", "gene_id", "_all_tag_keys")


def is_visium_folder(path: PathLike) -> bool:
    """Whether ``path`` is a folder that looks like Space Ranger's ``outs/`` (it holds
    ``filtered_feature_bc_matrix.h5`` or a ``spatial/`` folder)."""
    path = Path(path)
    return path.is_dir() and ((path / COUNT_FILE).is_file() or (path / "spatial").is_dir())


def read_visium(
    path: PathLike, *, library_id: str | None = None, load_images: bool = True
) -> AnnData:
    """Read a Space Ranger ``outs/`` folder into AnnData as :func:`scanpy.read_visium` does.

    Parameters
    ----------
    path
        The ``outs/`` folder (holding ``filtered_feature_bc_matrix.h5`` and ``spatial/``).
    library_id
        Key of ``uns["spatial"]`` (default: the library id stored in the ``.h5``, else the
        name of the folder above ``outs/``).
    load_images
        Read the hires / lowres images into ``uns["spatial"][library_id]["images"]``.

    Returns
    -------
    AnnData with counts, ``obs`` (``in_tissue``, ``array_row``, ``array_col``),
    ``obsm["spatial"]`` (full-resolution pixels, x = column, y = row) and ``uns["spatial"]``
    (see the module docstring). Duplicated gene symbols are made unique (``Gene``, ``Gene-1``;
    one warning says how many; the ids stay in ``var["gene_ids"]``).

    Raises
    ------
    FileFormatError
        The folder lacks a required file (the message names which), or a file cannot be read.
    """
    folder = Path(path).expanduser()
    files = _visium_files(folder)
    attrs: dict[str, Any] = {}
    if files["matrix"].suffix == ".h5":
        adata, attrs = read_10x_h5(files["matrix"])
    else:
        from .readers import read

        adata = read(files["matrix"])
    library_id = library_id or _library_id(attrs, folder)
    positions = _read_positions(files["positions"])
    missing = adata.obs_names[~adata.obs_names.isin(positions.index)]
    if len(missing):
        raise FileFormatError(
            f"{len(missing)} of {adata.n_obs} barcodes of {files['matrix'].name} are not in "
            f"{files['positions']} (e.g. {list(missing[:3])}): the folder mixes two runs; use "
            "the spatial/ folder written with that matrix"
        )
    positions = positions.loc[adata.obs_names]
    adata.obs = adata.obs.join(positions[list(_POSITION_COLUMNS[:3])])
    pixels = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy()
    adata.obsm["spatial"] = pixels
    library: dict[str, Any] = {}
    if load_images:
        library["images"] = _read_images(folder / "spatial")
    library["scalefactors"] = _read_json(files["scalefactors"])
    library["metadata"] = {
        k: attrs[k] for k in ("chemistry_description", "software_version") if k in attrs
    }
    adata.uns["spatial"] = {library_id: library}
    return adata


def _visium_files(folder: Path) -> dict[str, Path]:
    """The required files of an ``outs/`` folder, or one line naming those missing."""
    if not folder.is_dir():
        raise FileFormatError(
            f"{folder} is not a folder: pass Space Ranger's outs/ folder (it holds "
            f"{COUNT_FILE} and spatial/)"
        )
    spatial = folder / "spatial"
    matrix = folder / COUNT_FILE
    if not matrix.is_file() and (folder / COUNT_FILE.removesuffix(".h5")).is_dir():
        matrix = folder / COUNT_FILE.removesuffix(".h5")  # the MTX folder instead
    positions = next((spatial / n for n in _POSITIONS if (spatial / n).is_file()), None)
    found = {
        "matrix": matrix if matrix.exists() else None,
        "positions": positions,
        "scalefactors": spatial / _SCALEFACTORS if (spatial / _SCALEFACTORS).is_file() else None,
    }
    wanted = {
        "matrix": COUNT_FILE,
        "positions": f"spatial/{_POSITIONS[0]} (or spatial/{_POSITIONS[1]})",
        "scalefactors": f"spatial/{_SCALEFACTORS}",
    }
    absent = [wanted[k] for k, v in found.items() if v is None]
    if absent:
        raise FileFormatError(
            f"Space Ranger folder {folder} lacks {', '.join(absent)}: pass the outs/ folder "
            "Space Ranger wrote, with its files as they were"
        )
    return found  # type: ignore[return-value]


def _library_id(attrs: dict[str, Any], folder: Path) -> str:
    ids = attrs.get("library_ids")
    if ids is not None and len(np.atleast_1d(ids)):
        first = np.atleast_1d(ids)[0]
        return first.decode() if isinstance(first, bytes) else str(first)
    return folder.parent.name if folder.name == "outs" else folder.name


def _text(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def read_10x_h5(path: PathLike) -> tuple[AnnData, dict[str, Any]]:
    """Read a 10x Genomics HDF5 matrix (Cell Ranger / Space Ranger 3+ layout) with h5py.

    Like :func:`scanpy.read_10x_h5` (``gex_only=True``): cells named by barcode, features by
    symbol (made unique, one warning), ``var`` with ``gene_ids``, ``feature_types`` and the
    other feature fields; only 'Gene Expression' features are kept.

    Returns
    -------
    The AnnData and the file's root attributes (strings decoded).
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as fh:
            if "matrix" not in fh:
                raise FileFormatError(
                    f"{path} is not a 10x HDF5 matrix of Cell Ranger 3+ / Space Ranger (no "
                    "'matrix' group): re-export it, or read it with scanpy.read_10x_h5"
                )
            attrs = {k: _decode(v) for k, v in fh.attrs.items()}
            group = fh["matrix"]
            n_features, n_cells = (int(n) for n in group["shape"][()])
            data = np.asarray(group["data"][()], dtype=np.float32)
            X = sp.csr_matrix(
                (data, group["indices"][()], group["indptr"][()]), shape=(n_cells, n_features)
            )
            barcodes = _text(group["barcodes"][()])
            features = group["features"]
            var = pd.DataFrame(
                {"gene_ids": _text(features["id"][()])}, index=_text(features["name"][()])
            )
            if "gene_id" in features:  # a probe-barcode matrix
                var["gene_ids"] = _text(features["gene_id"][()])
                var["probe_ids"] = _text(features["id"][()])
            var["feature_types"] = _text(features["feature_type"][()])
            for name, item in features.items():
                if isinstance(item, h5py.Dataset) and name not in _FEATURE_FIELDS_SKIPPED:
                    values = item[()]
                    var[name] = values.astype(bool) if values.dtype.kind == "b" else _text(values)
    except FileFormatError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise FileFormatError(
            f"could not read {path} as a 10x HDF5 matrix ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}): the file is corrupt, truncated "
            "or not 10x HDF5: re-export it"
        ) from err
    var.index = pd.Index(var.index.astype(str))
    with warnings.catch_warnings():  # duplicated symbols: made unique below, one warning
        warnings.filterwarnings("ignore", message=".*names are not unique")
        adata = AnnData(X=X, obs=pd.DataFrame(index=pd.Index(barcodes.astype(str))), var=var)
    gex = (adata.var["feature_types"] == "Gene Expression").to_numpy()
    if not gex.all():
        adata = adata[:, gex].copy()
    make_names_unique(adata, source=path.name)
    return adata, attrs


def make_names_unique(adata: AnnData, *, source: str) -> None:
    """``var_names_make_unique`` (``Gene``, ``Gene-1``) with one warning naming how many, as
    scanpy / anndata warn."""
    if adata.var_names.is_unique:
        return
    n_dup = int(adata.var_names.duplicated().sum())
    warnings.warn(
        f"{source}: {n_dup} feature name(s) repeat (e.g. "
        f"{list(adata.var_names[adata.var_names.duplicated()][:3])}); made unique by appending "
        "'-1', '-2', ... (the ids stay in var['gene_ids'])",
        CellweaveWarning,
        stacklevel=3,
    )
    adata.var_names_make_unique()


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        return np.array([_decode(v) for v in value], dtype=object)
    return value


def _read_positions(path: Path) -> pd.DataFrame:
    """The spot table: barcode index, then in_tissue, array_row, array_col, and the
    full-resolution pixel row and column (Space Ranger's order), with or without header."""
    try:
        with open(path) as fh:
            first = fh.readline()
        header = 0 if "in_tissue" in first or "barcode" in first.lower() else None
        table = pd.read_csv(path, header=header, index_col=0)
    except Exception as err:
        raise FileFormatError(
            f"could not read {path} ({type(err).__name__}): it must be Space Ranger's table "
            "of barcode, in_tissue, array_row, array_col, pxl_row_in_fullres, "
            "pxl_col_in_fullres"
        ) from err
    if table.shape[1] != len(_POSITION_COLUMNS):
        raise FileFormatError(
            f"{path} has {table.shape[1] + 1} columns, but Space Ranger writes 6 (barcode, "
            "in_tissue, array_row, array_col, pxl_row_in_fullres, pxl_col_in_fullres): use "
            "the file as Space Ranger wrote it"
        )
    table.columns = list(_POSITION_COLUMNS)
    table.index = table.index.astype(str)
    return table


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_bytes())
    except Exception as err:
        raise FileFormatError(
            f"could not read {path} as JSON ({type(err).__name__}): re-export the Space "
            "Ranger folder"
        ) from err


def _read_images(spatial: Path) -> dict[str, np.ndarray]:
    """The hires / lowres images present (one warning names an absent one)."""
    from matplotlib.image import imread

    images = {}
    for res, name in _IMAGES.items():
        if not (spatial / name).is_file():
            warnings.warn(
                f"{spatial / name} is absent: uns['spatial'][...]['images'] has no {res!r} "
                "image (plots use the other one, or none)",
                CellweaveWarning,
                stacklevel=3,
            )
            continue
        try:
            images[res] = imread(str(spatial / name))
        except Exception as err:
            raise FileFormatError(
                f"could not read the image {spatial / name} ({type(err).__name__}): "
                "re-export the Space Ranger folder or delete the broken image"
            ) from err
    return images
