"""A Space Ranger ``outs/`` folder written from a simulated tissue, so that examples and tests
can start where a Visium user starts (``cellweave.io.read_visium``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .histology import render_histology

__all__ = ["write_spaceranger"]

_HIRES_PER_UNIT = 8.0  # image pixels per spot spacing of the hires image
_LOWRES_STEP = 4  # lowres = every 4th hires pixel


def write_spaceranger(
    adata: AnnData,
    folder: str | Path,
    *,
    spatial_key: str = "spatial",
    pixels_per_unit: float = 100.0,
    library_id: str = "sim",
) -> Path:
    """Write ``adata`` (counts in ``X``, coordinates in spot spacings, e.g. from
    :func:`~cellweave.sim.simulate_spatial`) as Space Ranger's ``outs/`` folder: the 10x
    ``filtered_feature_bc_matrix.h5``, ``spatial/tissue_positions.csv`` (full-resolution pixels:
    coordinates times ``pixels_per_unit``), ``scalefactors_json.json`` and an H&E-like
    ``tissue_hires_image.png`` / ``tissue_lowres_image.png`` drawn from ``obs["domain"]``
    (:func:`~cellweave.sim.render_histology`).

    Returns
    -------
    The ``outs/`` folder (``folder/outs``), ready for :func:`cellweave.io.read_visium`.
    """
    from matplotlib.image import imsave

    outs = Path(folder) / "outs"
    (outs / "spatial").mkdir(parents=True, exist_ok=True)
    coords = np.asarray(adata.obsm[spatial_key], dtype=float)[:, :2]
    origin = coords.min(axis=0) - 1.0
    units = coords - origin  # the image starts one spacing before the first spot
    barcodes = [f"{_barcode(i)}-1" for i in range(adata.n_obs)]
    _write_matrix(outs / "filtered_feature_bc_matrix.h5", adata, barcodes, library_id)
    pixels = np.rint(units * pixels_per_unit).astype(int)
    pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": 1,
            "array_row": np.rint(units[:, 1]).astype(int),
            "array_col": np.rint(units[:, 0]).astype(int),
            "pxl_row_in_fullres": pixels[:, 1],
            "pxl_col_in_fullres": pixels[:, 0],
        }
    ).to_csv(outs / "spatial" / "tissue_positions.csv", index=False)
    image = _image(adata, units)
    hires = _HIRES_PER_UNIT / pixels_per_unit
    factors = {
        "spot_diameter_fullres": 0.8 * pixels_per_unit,
        "fiducial_diameter_fullres": 1.3 * pixels_per_unit,
        "tissue_hires_scalef": hires,
        "tissue_lowres_scalef": hires / _LOWRES_STEP,
    }
    (outs / "spatial" / "scalefactors_json.json").write_text(json.dumps(factors))
    imsave(outs / "spatial" / "tissue_hires_image.png", image)
    imsave(outs / "spatial" / "tissue_lowres_image.png", image[::_LOWRES_STEP, ::_LOWRES_STEP])
    return outs


def _barcode(i: int) -> str:
    """A 16-letter barcode (ACGT digits of ``i``)."""
    return "".join("ACGT"[(i >> (2 * k)) & 3] for k in range(16))[::-1]


def _image(adata: AnnData, units: np.ndarray) -> np.ndarray:
    """The H&E-like image of the domains, ``_HIRES_PER_UNIT`` pixels per spacing."""
    view = AnnData(
        np.zeros((adata.n_obs, 1), dtype=np.float32),
        obs=pd.DataFrame({"domain": adata.obs.get("domain", pd.Series(0, index=adata.obs_names))}),
        obsm={"spatial": units},
    )
    render_histology(view, pixels_per_unit=_HIRES_PER_UNIT, spot_diameter=0.8)
    return np.clip(view.uns["spatial"]["sim"]["images"]["hires"], 0.0, 1.0)


def _write_matrix(path: Path, adata: AnnData, barcodes: list[str], library_id: str) -> None:
    """The 10x HDF5 matrix of Space Ranger (features x barcodes, CSC)."""
    import h5py

    counts = sparse.csr_matrix(adata.X).astype(np.int32)  # barcodes x features = CSC transposed
    names = [str(g) for g in adata.var_names]
    with h5py.File(path, "w") as fh:
        fh.attrs["library_ids"] = np.array([library_id.encode()])
        fh.attrs["chemistry_description"] = b"Spatial 3' v1"
        fh.attrs["software_version"] = b"cellweave simulator"
        group = fh.create_group("matrix")
        group["barcodes"] = np.array([b.encode() for b in barcodes])
        group["data"] = counts.data
        group["indices"] = counts.indices.astype(np.int64)
        group["indptr"] = counts.indptr.astype(np.int64)
        group["shape"] = np.array([adata.n_vars, adata.n_obs], dtype=np.int32)
        features = group.create_group("features")
        features["id"] = np.array([f"SIM{i:08d}".encode() for i in range(len(names))])
        features["name"] = np.array([n.encode() for n in names])
        features["feature_type"] = np.array([b"Gene Expression"] * len(names))
        features["genome"] = np.array([b"sim"] * len(names))
        features["_all_tag_keys"] = np.array([b"genome"])
