"""Tests of cellweave.io: round trips for every format, read-only reading, atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from anndata import AnnData
from mudata import MuData

from cellweave.errors import (
    DuplicateNamesError,
    FileFormatError,
    InputError,
    MissingKeyError,
)
from cellweave.io import atomic_path, read, read_anndata, read_coords, read_mudata, read_spatial
from cellweave.io import write as cw_write
from cellweave.validate import check_adata, check_mudata

pytestmark = pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning")

CELLS = [f"AAAC{i:02d}-1" for i in range(6)]
GENES = ["Gapdh", "Actb", "Sox2", "Pax6", "Olig2"]
COUNTS = np.array(
    [
        [1, 0, 3, 0, 2],
        [0, 4, 0, 0, 1],
        [5, 0, 0, 2, 0],
        [0, 0, 1, 1, 1],
        [2, 2, 0, 0, 0],
        [0, 1, 0, 6, 3],
    ],
    dtype=np.float32,
)
XY = np.arange(12, dtype=np.float64).reshape(6, 2) * 1.5


def _adata() -> AnnData:
    adata = AnnData(
        X=sp.csr_matrix(COUNTS),
        obs=pd.DataFrame({"cell_type": pd.Categorical(list("aabbcc"))}, index=CELLS),
        var=pd.DataFrame({"highly_variable": [True, False, True, True, False]}, index=GENES),
    )
    adata.obsm["spatial"] = XY.copy()
    adata.layers["counts"] = adata.X.copy()
    adata.uns["note"] = "hello"
    return adata


def _mudata() -> MuData:
    atac = AnnData(
        X=sp.csr_matrix(np.eye(6, 3, dtype=np.float32)),
        obs=pd.DataFrame(index=CELLS),
        var=pd.DataFrame(index=["chr1:1-100", "chr1:200-300", "chr2:5-50"]),
    )
    return MuData({"rna": _adata(), "atac": atac})


def _sha(path: Path) -> str:
    if path.is_dir():
        return "".join(_sha(p) for p in sorted(path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_counts_equal(adata: AnnData, counts=COUNTS, cells=CELLS, genes=GENES) -> None:
    assert list(adata.obs_names) == list(cells)
    assert list(adata.var_names) == list(genes)
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    np.testing.assert_array_equal(X, counts)


# --------------------------------------------------------------------------------------------
# writers of the input formats
# --------------------------------------------------------------------------------------------
def _write_table(path: Path, sep: str, *, transpose: bool = False) -> Path:
    df = pd.DataFrame(COUNTS.astype(int), index=CELLS, columns=GENES)
    (df.T if transpose else df).to_csv(path, sep=sep)
    return path


def _write_coords(path: Path, columns=("x", "y"), values=XY, sep=",", extra_rows=True) -> Path:
    df = pd.DataFrame(values, index=CELLS, columns=list(columns))
    df.insert(0, "in_tissue", 1) if "array_row" in columns else None
    if extra_rows:  # spots without cells, as in a Visium tissue_positions file
        extra = pd.DataFrame(np.full((2, df.shape[1]), -1.0), columns=df.columns)
        extra.index = ["EMPTY-1", "EMPTY-2"]
        df = pd.concat([df, extra])
    df.iloc[::-1].to_csv(path, sep=sep)  # rows in another order than the counts
    return path


def _write_10x_mtx(folder: Path, *, gz: bool = True, features: str = "features") -> Path:
    """CellRanger v3 layout (v2 with gz=False, features='genes')."""
    folder.mkdir()
    z = ".gz" if gz else ""
    opener = gzip.open if gz else open
    with opener(folder / f"matrix.mtx{z}", "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(COUNTS.T.astype(int)))
    ids = [f"ENSMUSG{i:011d}" for i in range(len(GENES))]
    symbols = [*GENES[:-1], GENES[0]]  # a duplicated symbol, made unique on reading
    rows = [f"{i}\t{s}\tGene Expression" for i, s in zip(ids, symbols, strict=True)]
    with opener(folder / f"{features}.tsv{z}", "wt") as fh:
        fh.write("\n".join(rows) + "\n")
    with opener(folder / f"barcodes.tsv{z}", "wt") as fh:
        fh.write("\n".join(CELLS) + "\n")
    return folder


def _write_10x_h5(path: Path) -> Path:
    """CellRanger v3 ``filtered_feature_bc_matrix.h5``: a CSC genes x cells matrix."""
    m = sp.csc_matrix(COUNTS.T.astype(np.int32))
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array(CELLS, dtype="S")
        g["data"] = m.data
        g["indices"] = m.indices.astype(np.int64)
        g["indptr"] = m.indptr.astype(np.int64)
        g["shape"] = np.array(m.shape, dtype=np.int32)
        feats = g.create_group("features")
        feats["_all_tag_keys"] = np.array([b"genome"])
        feats["feature_type"] = np.array([b"Gene Expression"] * len(GENES))
        feats["genome"] = np.array([b"mm10"] * len(GENES))
        feats["id"] = np.array([f"ENSMUSG{i:011d}" for i in range(len(GENES))], dtype="S")
        feats["name"] = np.array(GENES, dtype="S")
    return path


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    """One small file of every readable format, all holding COUNTS."""
    h5ad = tmp_path / "a.h5ad"
    _adata().write_h5ad(h5ad)
    h5mu = tmp_path / "m.h5mu"
    _mudata().write_h5mu(h5mu)
    return {
        "h5ad": h5ad,
        "h5mu": h5mu,
        "10x_h5": _write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5"),
        "mtx_dir": _write_10x_mtx(tmp_path / "mtx"),
        "csv": _write_table(tmp_path / "counts.csv", ","),
        "tsv_gz": _write_table(tmp_path / "counts.tsv.gz", "\t"),
        "coords": _write_coords(tmp_path / "coords.csv"),
    }


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def test_h5ad_round_trip(tmp_path):
    out = cw_write(_adata(), tmp_path / "sub" / "out.h5ad")
    assert out == tmp_path / "sub" / "out.h5ad"
    back = read(out)
    _assert_counts_equal(back)
    np.testing.assert_array_equal(back.obsm["spatial"], XY)
    np.testing.assert_array_equal(back.layers["counts"].toarray(), COUNTS)
    assert list(back.obs["cell_type"]) == list("aabbcc")
    assert back.var["highly_variable"].tolist() == [True, False, True, True, False]
    assert back.uns["note"] == "hello"
    assert not back.isbacked


@pytest.mark.parametrize("compression", ["gzip", None])
def test_h5mu_round_trip(tmp_path, compression):
    out = cw_write(_mudata(), tmp_path / "out.h5mu", compression=compression)
    back = read(out)
    assert isinstance(back, MuData)
    assert set(back.mod) == {"rna", "atac"}
    _assert_counts_equal(back["rna"])
    np.testing.assert_array_equal(back["atac"].X.toarray(), np.eye(6, 3))
    assert back.n_obs == 6
    assert read_mudata(out).shape == back.shape


def test_read_10x_h5(inputs):
    adata = read(inputs["10x_h5"])
    _assert_counts_equal(adata)
    assert adata.var["gene_ids"].iloc[1] == "ENSMUSG00000000001"
    assert (adata.var["feature_types"] == "Gene Expression").all()


@pytest.mark.parametrize("target", ["dir", "matrix_file"])
def test_read_10x_mtx_v3(inputs, target):
    path = inputs["mtx_dir"] if target == "dir" else inputs["mtx_dir"] / "matrix.mtx.gz"
    adata = read(path)
    _assert_counts_equal(adata, genes=[*GENES[:-1], "Gapdh-1"])
    assert adata.var["gene_ids"].tolist()[-1] == "ENSMUSG00000000004"
    assert sp.issparse(adata.X)


@pytest.mark.parametrize(("gz", "features"), [(False, "genes"), (False, "features")])
def test_read_10x_mtx_v2_and_unzipped(tmp_path, gz, features):
    folder = _write_10x_mtx(tmp_path / "mtx", gz=gz, features=features)
    _assert_counts_equal(read(folder), genes=[*GENES[:-1], "Gapdh-1"])


def test_read_10x_mtx_keeps_gene_expression_only(tmp_path):
    folder = _write_10x_mtx(tmp_path / "mtx")
    with gzip.open(folder / "features.tsv.gz", "rt") as fh:
        lines = fh.read().splitlines()
    lines[1] = lines[1].replace("Gene Expression", "Antibody Capture")
    with gzip.open(folder / "features.tsv.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    adata = read(folder)
    assert "Actb" not in adata.var_names and adata.n_vars == 4
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS[:, [0, 2, 3, 4]])


@pytest.mark.parametrize(
    ("name", "sep", "transpose"),
    [
        ("counts.csv", ",", False),
        ("counts.tsv", "\t", False),
        ("counts.csv.gz", ",", False),
        ("counts.txt", "\t", False),
        ("counts.txt", ",", False),
        ("counts.txt", " ", False),
        ("genes_by_cells.tsv", "\t", True),
    ],
)
def test_read_counts_table(tmp_path, name, sep, transpose):
    path = _write_table(tmp_path / name, sep, transpose=transpose)
    adata = read(path, transpose=transpose)
    _assert_counts_equal(adata)
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32


def test_read_counts_table_explicit_sep(tmp_path):
    path = _write_table(tmp_path / "counts.csv", ";")
    _assert_counts_equal(read(path, sep=";"))
    with pytest.raises(FileFormatError, match="sep="):
        read(path)  # read as ',' the whole line is one column


def test_read_counts_table_rejects_text_columns(tmp_path):
    df = pd.DataFrame(COUNTS, index=CELLS, columns=GENES)
    df["cluster"] = "a"
    df.to_csv(tmp_path / "t.csv")
    with pytest.raises(FileFormatError, match=r"non-numeric column\(s\) \['cluster'\]"):
        read(tmp_path / "t.csv")


# --------------------------------------------------------------------------------------------
# coordinates
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("columns", "values", "expected"),
    [
        (("x", "y"), XY, XY),
        (("X", "Y", "Z"), np.c_[XY, XY[:, :1]], np.c_[XY, XY[:, :1]]),
        (("array_row", "array_col"), XY, XY[:, ::-1]),  # x = column, y = row
        (("imagerow", "imagecol"), XY, XY[:, ::-1]),
        (("pxl_row_in_fullres", "pxl_col_in_fullres"), XY, XY[:, ::-1]),
        (("x_centroid", "y_centroid"), XY, XY),
        (("first", "second"), XY, XY),  # two unnamed numeric columns
    ],
)
def test_read_with_coords(inputs, tmp_path, columns, values, expected):
    coords = _write_coords(tmp_path / "xy.tsv", columns=columns, values=values, sep="\t")
    adata = read(inputs["csv"], coords=coords)
    np.testing.assert_array_equal(adata.obsm["spatial"], expected)
    _assert_counts_equal(adata)


def test_read_spatial_with_coords_and_key(inputs):
    adata = read_spatial(inputs["tsv_gz"], coords=inputs["coords"], spatial_key="xy")
    np.testing.assert_array_equal(adata.obsm["xy"], XY)
    df = pd.read_csv(inputs["coords"], index_col=0)
    adata = read(inputs["mtx_dir"], coords=df)  # a DataFrame works too
    np.testing.assert_array_equal(adata.obsm["spatial"], XY)


def test_coords_errors(inputs, tmp_path):
    few = _write_coords(tmp_path / "few.csv", extra_rows=False)
    pd.read_csv(few, index_col=0).iloc[2:].to_csv(few)  # 2 of 6 cells lost
    with pytest.raises(InputError, match="2 of 6 cells have no coordinates"):
        read(inputs["csv"], coords=few)
    other = pd.DataFrame(XY, index=[f"cell{i}" for i in range(6)], columns=["x", "y"])
    with pytest.raises(InputError, match="none of the 6 cell names"):
        read(inputs["csv"], coords=other)
    dup = pd.DataFrame(XY, index=CELLS[:5] + CELLS[:1], columns=["x", "y"])
    with pytest.raises(DuplicateNamesError, match="more than once"):
        read(inputs["csv"], coords=dup)
    many = pd.DataFrame(np.ones((6, 4)), index=CELLS, columns=list("abcd"))
    with pytest.raises(FileFormatError, match="cannot tell which columns"):
        read(inputs["csv"], coords=many)
    with pytest.raises(FileFormatError, match=r"coordinates file .* does not exist"):
        read(inputs["csv"], coords=tmp_path / "nope.csv")
    with pytest.raises(FileFormatError, match=r"expected a \.csv"):
        read(inputs["csv"], coords=inputs["h5ad"])
    with pytest.raises(InputError, match="only be joined into AnnData"):
        read(inputs["h5mu"], coords=inputs["coords"])


def test_read_coords_returns_float_frame(inputs):
    df = read_coords(inputs["coords"])
    assert list(df.columns) == ["x", "y"] and df.dtypes.eq(np.float64).all()
    assert df.shape == (8, 2) and df.index[0] == "EMPTY-2"


# --------------------------------------------------------------------------------------------
# reading never changes the input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["h5ad", "h5mu", "10x_h5", "mtx_dir", "csv", "tsv_gz"])
def test_read_leaves_file_unchanged(inputs, kind):
    path = inputs[kind]
    before = (_sha(path), path.stat().st_mtime_ns)
    data = read(path, coords=None if kind == "h5mu" else inputs["coords"])
    data.X = None if isinstance(data, AnnData) else data.X  # mutate the object in memory
    assert (_sha(path), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []


def test_read_works_on_read_only_file(inputs):
    path = inputs["h5ad"]
    path.chmod(0o444)
    try:
        _assert_counts_equal(read(path))
    finally:
        path.chmod(0o644)


# --------------------------------------------------------------------------------------------
# reading errors
# --------------------------------------------------------------------------------------------
def _assert_one_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg


def test_read_missing_file(tmp_path):
    with pytest.raises(FileFormatError) as err:
        read(tmp_path / "absent.h5ad")
    _assert_one_line(err, "absent.h5ad does not exist", "check the path")


@pytest.mark.parametrize("name", ["data.loom", "data.xlsx", "data", "data.h5ad.gz"])
def test_read_unknown_extension(tmp_path, name):
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(FileFormatError) as err:
        read(tmp_path / name)
    _assert_one_line(err, "unknown format", ".h5ad (AnnData)", ".h5mu (MuData)", "10x")


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("bad.h5ad", "AnnData (.h5ad)"),
        ("bad.h5mu", "MuData (.h5mu)"),
        ("bad.h5", "10x Genomics HDF5"),
        ("matrix.mtx.gz", "10x MTX"),
    ],
)
def test_read_corrupt_file(tmp_path, name, label):
    (tmp_path / name).write_bytes(b"\x89HDF\r\n this is not really a valid file" * 10)
    for other in ("barcodes.tsv.gz", "features.tsv.gz"):
        (tmp_path / other).write_bytes(b"")
    with pytest.raises(FileFormatError) as err:
        read(tmp_path / name)
    _assert_one_line(err, f"could not read {tmp_path / name} as {label}", "check that the file")
    assert err.value.__cause__ is not None


def test_read_truncated_h5ad(inputs, tmp_path):
    data = inputs["h5ad"].read_bytes()
    (tmp_path / "cut.h5ad").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"could not read .* as AnnData"):
        read(tmp_path / "cut.h5ad")


def test_read_h5_that_is_not_10x(inputs, tmp_path):
    (tmp_path / "x.h5").write_bytes(inputs["h5ad"].read_bytes())
    with pytest.raises(FileFormatError, match="as 10x Genomics HDF5"):
        read(tmp_path / "x.h5")


def test_read_mtx_dir_incomplete(tmp_path):
    folder = _write_10x_mtx(tmp_path / "mtx")
    (folder / "barcodes.tsv.gz").unlink()
    with pytest.raises(FileFormatError) as err:
        read(folder)
    _assert_one_line(err, "is not a 10x MTX directory", "barcodes.tsv")
    with pytest.raises(FileFormatError, match="not a 10x MTX directory"):
        read(tmp_path)  # any folder


def test_read_mtx_dir_inconsistent(tmp_path):
    folder = _write_10x_mtx(tmp_path / "mtx")
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.write("\n".join(CELLS[:4]) + "\n")
    with pytest.raises(FileFormatError, match=r"lists 5 genes and barcodes\.tsv\.gz 4 barcodes"):
        read(folder)


def test_read_wrong_kind(inputs):
    with pytest.raises(FileFormatError) as err:
        read_anndata(inputs["h5mu"])
    _assert_one_line(err, "holds a MuData", "single-modality AnnData", ".h5ad")
    with pytest.raises(FileFormatError, match="holds a AnnData, but multi-modal MuData"):
        read_mudata(inputs["h5ad"])
    with pytest.raises(FileFormatError, match="holds a MuData"):
        read_spatial(inputs["h5mu"])


def test_read_spatial_requires_coordinates(inputs):
    adata = read_spatial(inputs["h5ad"])
    np.testing.assert_array_equal(adata.obsm["spatial"], XY)
    with pytest.raises(MissingKeyError) as err:
        read_spatial(inputs["csv"])
    _assert_one_line(err, "counts.csv has no spatial coordinates in obsm['spatial']", "coords=")
    with pytest.raises(MissingKeyError, match=r"obsm\['xy'\].*obsm keys: \['spatial'\]"):
        read_spatial(inputs["h5ad"], spatial_key="xy")


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def test_write_refuses_to_overwrite(tmp_path):
    path = tmp_path / "out.h5ad"
    path.write_bytes(b"precious")
    with pytest.raises(FileFormatError) as err:
        cw_write(_adata(), path)
    _assert_one_line(err, "already exists", "overwrite=True")
    assert path.read_bytes() == b"precious"
    cw_write(_adata(), path, overwrite=True)
    _assert_counts_equal(read(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


@pytest.mark.parametrize(
    ("data", "name", "hint"),
    [
        (_adata, "out.h5mu", "extension must be .h5ad"),
        (_mudata, "out.h5ad", "extension must be .h5mu"),
        (lambda: pd.DataFrame({"a": [1]}), "out.h5ad", "extension must be .csv"),
    ],
)
def test_write_checks_extension(tmp_path, data, name, hint):
    with pytest.raises(FileFormatError, match=hint):
        cw_write(data(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_other_types_and_directories(tmp_path):
    with pytest.raises(InputError, match="cannot write a ndarray"):
        cw_write(COUNTS, tmp_path / "x.h5ad")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileFormatError, match="cannot create the folder"):
        cw_write(_adata(), tmp_path / "file" / "x.h5ad")
    (tmp_path / "d.h5ad").mkdir()
    with pytest.raises(FileFormatError, match="is a directory"):
        cw_write(_adata(), tmp_path / "d.h5ad", overwrite=True)


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.csv.gz"])
def test_write_dataframe(tmp_path, name):
    df = pd.DataFrame(COUNTS, index=CELLS, columns=GENES)
    cw_write(df, tmp_path / name)
    sep = "\t" if ".tsv" in name else ","
    back = pd.read_csv(tmp_path / name, index_col=0, sep=sep)
    pd.testing.assert_frame_equal(back.astype(np.float32), df)
    if name.endswith(".gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"


def test_write_failure_leaves_no_temp_and_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.h5ad"
    cw_write(_adata(), path)
    before = _sha(path)

    def broken(self, filename, **kwargs):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(AnnData, "write_h5ad", broken)
    with pytest.raises(OSError, match="disk full"):
        cw_write(_adata(), path, overwrite=True)
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


# --------------------------------------------------------------------------------------------
# atomic_path
# --------------------------------------------------------------------------------------------
def test_atomic_path_keeps_suffix_and_renames(tmp_path):
    target = tmp_path / "figs" / "umap.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith("umap.png")
        assert tmp.name.startswith(".") and not tmp.exists() and not target.exists()
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        fig.savefig(tmp)  # the format comes from the extension
        plt.close(fig)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in target.parent.iterdir()] == ["umap.png"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_path_cleans_up_on_failure(tmp_path, error):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(type(error)), atomic_path(target, overwrite=True) as tmp:
        tmp.write_bytes(b"partial")
        raise error
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_atomic_path_removes_temp_directory(tmp_path):
    with pytest.raises(ValueError), atomic_path(tmp_path / "store.zarr") as tmp:
        (tmp / "sub").mkdir(parents=True)
        raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_errors(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(FileFormatError, match="nothing was written"), atomic_path(target):
        pass
    assert not target.exists()
    target.write_text("x")
    with pytest.raises(FileFormatError, match="already exists: pass overwrite=True"):
        with atomic_path(target):
            pass  # pragma: no cover
    # the target appears while the writer works: not clobbered without overwrite
    other = tmp_path / "b.txt"
    with pytest.raises(FileFormatError, match="already exists"), atomic_path(other) as tmp:
        tmp.write_text("new")
        other.write_text("someone else's")
    assert other.read_text() == "someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_atomic_path_written_file_has_normal_permissions(tmp_path):
    target = tmp_path / "t.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("hi")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------
@pytest.mark.real_data
def test_read_real_merfish(real_data):
    path = real_data("merfish_hypothalamus_spatial.h5ad")
    before = _sha(path)
    adata = read_spatial(path)
    assert adata.shape == (750, 134)
    assert adata.obsm["spatial"].shape == (750, 2)
    check_adata(adata, require_counts=True, spatial_key="spatial")
    assert _sha(path) == before


@pytest.mark.real_data
def test_read_real_mosaic(real_data):
    path = real_data("mop_mosaic_rna_atac.h5mu")
    mdata = read_mudata(path)
    assert mdata.n_obs == 10_309
    mods = check_mudata(mdata, modalities=["rna", "atac"])
    batch = mdata.obs["batch"].astype(str)
    assert set(batch) == {"paired", "rna_only", "atac_only"}
    # each modality holds only its measured cells
    assert mods["rna"].n_obs == int(batch.isin(["paired", "rna_only"]).sum())
    assert mods["atac"].n_obs == int(batch.isin(["paired", "atac_only"]).sum())
    assert mods["rna"].n_vars == 1_677 and mods["atac"].n_vars == 25_734
