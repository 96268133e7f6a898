"""Space Ranger outs/ folders: cellweave.io.read_visium against scanpy.read_visium on the
same hand-built folder, both position-file layouts, missing files, and the CLI reading it."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imsave
from scipy import sparse

import cellweave as cw
from cellweave.errors import FileFormatError

GENES = ["Gapdh", "Actb", "Sox2", "Actb", "Mbp", "Plp1"]  # "Actb" twice: made unique
N_SPOTS = 12


def _write_h5(path: Path, counts: np.ndarray, barcodes: list[str]) -> None:
    """A 10x HDF5 matrix (Space Ranger layout): features x barcodes CSC, i.e. CSR of
    barcodes x features, plus one antibody feature that gex-only reading drops."""
    names = [*GENES, "CD3"]
    types = ["Gene Expression"] * len(GENES) + ["Antibody Capture"]
    full = np.hstack([counts, np.arange(len(barcodes))[:, None] % 3])
    csr = sparse.csr_matrix(full.astype(np.int32))
    with h5py.File(path, "w") as fh:
        fh.attrs["library_ids"] = np.array([b"lib_A"])
        fh.attrs["chemistry_description"] = b"Visium Spatial Gene Expression"
        fh.attrs["software_version"] = b"spaceranger-2.0.0"
        group = fh.create_group("matrix")
        group["barcodes"] = np.array([b.encode() for b in barcodes])
        group["data"] = csr.data.astype(np.int32)
        group["indices"] = csr.indices.astype(np.int64)
        group["indptr"] = csr.indptr.astype(np.int64)
        group["shape"] = np.array([full.shape[1], full.shape[0]], dtype=np.int32)
        features = group.create_group("features")
        features["id"] = np.array([f"ENSMUSG{i:011d}".encode() for i in range(len(names))])
        features["name"] = np.array([n.encode() for n in names])
        features["feature_type"] = np.array([t.encode() for t in types])
        features["genome"] = np.array([b"mm10"] * len(names))
        features["_all_tag_keys"] = np.array([b"genome"])


def make_outs(folder: Path, *, layout: str = "v2", seed: int = 0) -> Path:
    """A tiny Space Ranger outs/ folder: matrix, positions (``v2``: tissue_positions.csv
    with a header; ``v1``: tissue_positions_list.csv without), scale factors, two images.
    Positions list more barcodes than the matrix (as Space Ranger's do)."""
    rng = np.random.default_rng(seed)
    outs = folder / "outs"
    (outs / "spatial").mkdir(parents=True)
    barcodes = [f"AAAC{i:04d}-1" for i in range(N_SPOTS)]
    counts = rng.poisson(3.0, size=(N_SPOTS, len(GENES)))
    _write_h5(outs / "filtered_feature_bc_matrix.h5", counts, barcodes)
    all_barcodes = [*barcodes, "TTTT0000-1", "TTTT0001-1"]
    rows = np.arange(len(all_barcodes)) // 4
    cols = np.arange(len(all_barcodes)) % 4 * 2
    table = pd.DataFrame(
        {
            "barcode": all_barcodes,
            "in_tissue": [1] * N_SPOTS + [0, 0],
            "array_row": rows,
            "array_col": cols,
            "pxl_row_in_fullres": 1000 + 100 * rows,  # rows go down the image
            "pxl_col_in_fullres": 2000 + 50 * cols,
        }
    ).iloc[::-1]  # another order than the matrix
    if layout == "v2":
        table.to_csv(outs / "spatial" / "tissue_positions.csv", index=False)
    else:
        table.to_csv(outs / "spatial" / "tissue_positions_list.csv", index=False, header=False)
    scale = {
        "spot_diameter_fullres": 89.4,
        "tissue_hires_scalef": 0.17,
        "fiducial_diameter_fullres": 144.5,
        "tissue_lowres_scalef": 0.051,
    }
    (outs / "spatial" / "scalefactors_json.json").write_text(json.dumps(scale))
    imsave(outs / "spatial" / "tissue_hires_image.png", rng.random((40, 60, 3)))
    imsave(outs / "spatial" / "tissue_lowres_image.png", rng.random((12, 18, 3)))
    return outs


def _scanpy(outs: Path):
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = sc.read_visium(outs)
    adata.var_names_make_unique()
    return adata


def _same_as_scanpy(ours, theirs) -> None:
    assert list(ours.obs_names) == list(theirs.obs_names)
    assert list(ours.var_names) == list(theirs.var_names)
    np.testing.assert_array_equal(ours.X.toarray(), theirs.X.toarray())
    assert ours.X.dtype == theirs.X.dtype
    pd.testing.assert_frame_equal(ours.obs, theirs.obs, check_dtype=False)
    pd.testing.assert_frame_equal(ours.var, theirs.var)
    np.testing.assert_array_equal(ours.obsm["spatial"], theirs.obsm["spatial"])
    assert list(ours.uns["spatial"]) == list(theirs.uns["spatial"])
    lib = next(iter(theirs.uns["spatial"]))
    mine, ref = ours.uns["spatial"][lib], theirs.uns["spatial"][lib]
    assert mine["scalefactors"] == ref["scalefactors"]
    assert mine["metadata"] == ref["metadata"]
    assert set(mine["images"]) == set(ref["images"]) == {"hires", "lowres"}
    for res in ("hires", "lowres"):
        np.testing.assert_array_equal(mine["images"][res], ref["images"][res])


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_read_visium_matches_scanpy_field_by_field(tmp_path, layout):
    outs = make_outs(tmp_path, layout=layout)
    with pytest.warns(UserWarning, match="repeat"):
        ours = cw.io.read_visium(outs)
    _same_as_scanpy(ours, _scanpy(outs))
    # what scanpy's layout means, checked directly
    assert list(ours.var_names) == ["Gapdh", "Actb", "Sox2", "Actb-1", "Mbp", "Plp1"]
    assert "CD3" not in ours.var_names  # gene expression only
    assert list(ours.obs.columns) == ["in_tissue", "array_row", "array_col"]
    i = list(ours.obs_names).index("AAAC0005-1")  # array row 1, array col 2
    np.testing.assert_array_equal(ours.obsm["spatial"][i], [2000 + 50 * 2, 1000 + 100 * 1])
    assert ours.uns["spatial"]["lib_A"]["metadata"]["software_version"] == "spaceranger-2.0.0"


def test_read_dispatches_outs_folder_and_plots_with_scanpy(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    outs = make_outs(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = cw.io.read(outs)
        spatial = cw.io.read_spatial(outs)
    assert adata.shape == (N_SPOTS, len(GENES)) and "spatial" in spatial.obsm
    sc.pl.spatial(adata, color="Gapdh", show=False)  # uses the image and scale factors


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("filtered_feature_bc_matrix.h5", "filtered_feature_bc_matrix.h5"),
        ("spatial/tissue_positions.csv", "spatial/tissue_positions.csv"),
        ("spatial/scalefactors_json.json", "spatial/scalefactors_json.json"),
    ],
)
def test_missing_file_is_one_line_naming_it(tmp_path, remove, named):
    outs = make_outs(tmp_path)
    (outs / remove).unlink()
    with pytest.raises(FileFormatError, match=named) as err:
        cw.io.read_visium(outs)
    assert "\n" not in str(err.value)


def test_missing_image_warns_and_keeps_the_other(tmp_path):
    outs = make_outs(tmp_path)
    (outs / "spatial" / "tissue_hires_image.png").unlink()
    with pytest.warns(UserWarning, match="hires"):
        adata = cw.io.read_visium(outs)
    assert set(adata.uns["spatial"]["lib_A"]["images"]) == {"lowres"}


def test_barcodes_without_positions_refused(tmp_path):
    outs = make_outs(tmp_path)
    path = outs / "spatial" / "tissue_positions.csv"
    table = pd.read_csv(path)
    table[table["barcode"] != "AAAC0003-1"].to_csv(path, index=False)
    with pytest.raises(FileFormatError, match="1 of 12 barcodes"):
        cw.io.read_visium(outs)


def test_mtx_folder_used_when_h5_absent(tmp_path):
    outs = make_outs(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = cw.io.read_visium(outs)
    mtx = outs / "filtered_feature_bc_matrix"
    mtx.mkdir()
    from scipy.io import mmwrite

    mmwrite(mtx / "matrix.mtx", sparse.coo_matrix(reference.X.T.astype(np.int64)))
    pd.DataFrame(
        {0: reference.var["gene_ids"], 1: reference.var_names, 2: "Gene Expression"}
    ).to_csv(mtx / "features.tsv", sep="\t", header=False, index=False)
    pd.Series(reference.obs_names).to_csv(mtx / "barcodes.tsv", header=False, index=False)
    (outs / "filtered_feature_bc_matrix.h5").unlink()
    adata = cw.io.read_visium(outs)
    np.testing.assert_array_equal(adata.X.toarray(), reference.X.toarray())
    np.testing.assert_array_equal(adata.obsm["spatial"], reference.obsm["spatial"])


def test_cli_reads_outs_folder(tmp_path, capsys):
    from cellweave.cli import main

    outs = make_outs(tmp_path)
    assert main(["inspect", str(outs), "--spatial"]) == 0
    assert f"{N_SPOTS} obs x {len(GENES)} vars" in capsys.readouterr().out
    out = tmp_path / "graph.h5ad"
    assert main(["neighbors", str(outs), "--out", str(out)]) == 0
    written = cw.io.read(out)
    assert "lib_A" in written.uns["spatial"]
    assert written.obsp["spatial_connectivities"].shape == (N_SPOTS, N_SPOTS)
    capsys.readouterr()
    shutil.rmtree(outs / "spatial")
    assert main(["inspect", str(outs)]) == 2
    err = capsys.readouterr().err.strip()
    assert "lacks spatial/tissue_positions.csv" in err and "\n" not in err
