"""Corrupt or truncated .h5ad/.h5mu files: refused in one FileFormatError line when read
(in memory or backed), and exit 2 without output in every CLI command that reads files.

The files are simulated, written with ``cellweave.io.write`` (uncompressed, so that garbled
bytes still decode, as in files written by other tools) and then patched with h5py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from cellweave import io
from cellweave.cli import main
from cellweave.errors import FileFormatError, InputError
from cellweave.sim import simulate_mosaic, simulate_spatial
from cellweave.validate import check_sparse, sparse_problem

FIX = "corrupt or truncated: re-export it"


# --------------------------------------------------------------------------------------------
# corruptions, each a function of the open h5py file and the group of the matrix to spoil
# --------------------------------------------------------------------------------------------
def _replace(group: h5py.Group, name: str, values: np.ndarray) -> None:
    del group[name]
    group[name] = values


def bad_indices(f: h5py.File, where: str) -> None:
    d = f[f"{where}/indices"]
    v = d[...]
    v[len(v) // 2] = f[where].attrs["shape"][1] + 7
    d[...] = v


def negative_index(f: h5py.File, where: str) -> None:
    d = f[f"{where}/indices"]
    v = d[...]
    v[-1] = -3
    d[...] = v


def decreasing_indptr(f: h5py.File, where: str) -> None:
    d = f[f"{where}/indptr"]
    v = d[...]
    v[10] = v[12] + 1
    d[...] = v


def short_indptr(f: h5py.File, where: str) -> None:
    _replace(f[where], "indptr", f[f"{where}/indptr"][:-5])


def indptr_past_nnz(f: h5py.File, where: str) -> None:
    d = f[f"{where}/indptr"]
    v = d[...]
    v[-1] += 40
    d[...] = v


def data_shorter(f: h5py.File, where: str) -> None:
    _replace(f[where], "data", f[f"{where}/data"][:-3])


def shape_mismatch(f: h5py.File, where: str) -> None:
    rows, cols = f[where].attrs["shape"]
    f[where].attrs["shape"] = np.array([rows, cols + 25])


def string_dtype(f: h5py.File, where: str) -> None:
    _replace(f[where], "data", f[f"{where}/data"][...].astype("S8"))


def random_bytes(f: h5py.File, where: str) -> None:
    """Mark where 4 KB of random bytes go: the middle of the index array (see _spoil)."""
    d = f[f"{where}/indices"]
    start, size = d.id.get_offset(), d.size * d.dtype.itemsize
    if start is None:  # chunked: the middle chunk (stored as is: no compression)
        info = d.id.get_chunk_info(d.id.get_num_chunks() // 2)
        start, size = info.byte_offset, info.size
    assert size >= 4096
    f.attrs["_spoil_offset"] = start + size // 2 - 2048


CORRUPTIONS: dict[str, Callable[[h5py.File, str], None]] = {
    "bad_indices": bad_indices,
    "negative_index": negative_index,
    "decreasing_indptr": decreasing_indptr,
    "short_indptr": short_indptr,
    "indptr_past_nnz": indptr_past_nnz,
    "data_shorter": data_shorter,
    "shape_mismatch": shape_mismatch,
    "string_dtype": string_dtype,
    "random_bytes": random_bytes,
}


def _spoil(src: Path, dst: Path, kind: str, where: str = "X") -> Path:
    """Copy ``src`` to ``dst`` and apply one corruption (or a byte-level one)."""
    shutil.copy(src, dst)
    if kind == "truncated":
        data = src.read_bytes()
        dst.write_bytes(data[: int(len(data) * 0.6)])
        return dst
    if kind == "not_hdf5":
        dst.write_bytes(np.random.default_rng(3).bytes(20_000))
        return dst
    with h5py.File(dst, "r+") as f:
        CORRUPTIONS[kind](f, where)
        offset = f.attrs.get("_spoil_offset")
    if offset is not None:
        with open(dst, "r+b") as fh:
            fh.seek(int(offset))
            fh.write(np.random.default_rng(7).bytes(4096))
    return dst


ALL_KINDS = [*CORRUPTIONS, "truncated", "not_hdf5"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("good")
    spatial, reference = simulate_spatial(n_spots=200, n_genes=60, n_ref_cells=200)
    for adata in (spatial, reference):
        adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    spatial.layers["counts"] = spatial.X.copy()
    mdata = simulate_mosaic(n_cells=200, n_genes=60, n_peaks=200, n_proteins=8)
    out = {
        "spatial": io.write(spatial, folder / "spatial.h5ad", compression=None),
        "reference": io.write(reference, folder / "reference.h5ad", compression=None),
        "mosaic": io.write(mdata, folder / "mosaic.h5mu", compression=None),
    }
    with h5py.File(out["mosaic"]) as f:
        assert f["mod/rna/X"].attrs["encoding-type"] == "csr_matrix"
    return out


def assert_one_line(err: pytest.ExceptionInfo, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


# --------------------------------------------------------------------------------------------
# the check itself
# --------------------------------------------------------------------------------------------
def _csr(n_rows: int = 6, n_cols: int = 5) -> sp.csr_matrix:
    return sp.random(n_rows, n_cols, density=0.5, format="csr", random_state=0)


def test_sound_matrices_pass():
    for matrix in (_csr(), _csr().tocsc(), _csr().tocoo(), sp.csr_matrix((0, 4)), _csr().tolil()):
        assert sparse_problem(matrix) is None
    check_sparse(np.zeros((3, 2)), what="X")


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (lambda m: m.indices.__setitem__(0, 5), "column index 5 outside [0, 5)"),
        (lambda m: m.indices.__setitem__(0, -1), "column index -1"),
        (lambda m: m.indptr.__setitem__(2, 99), "decreasing indptr"),
        (lambda m: setattr(m, "indptr", m.indptr[:-1]), "indptr of length 6"),
        (lambda m: setattr(m, "data", m.data[:-1]), "stored values"),
        (lambda m: m.indptr.__setitem__(-1, 1), "indptr from 0 to 1"),
    ],
)
def test_structural_problems_are_named(spoil, words):
    matrix = _csr()
    spoil(matrix)
    with pytest.raises(FileFormatError) as err:
        check_sparse(matrix, what="X", source="f.h5ad")
    assert_one_line(err, "f.h5ad: X has", words, FIX)


def test_csc_indices_are_rows():
    matrix = _csr().tocsc()
    matrix.indices[0] = 6
    assert "row index 6 outside [0, 6)" in sparse_problem(matrix)


def test_dense_dtype_is_checked():
    with pytest.raises(FileFormatError, match="non-numeric type"):
        check_sparse(np.array([["a", "b"]], dtype=object), what="X")


def test_backed_index_array_is_read_in_chunks(files, tmp_path, monkeypatch):
    """A backed matrix's indices are checked piece by piece (small chunks here)."""
    from cellweave.validate import structure

    path = _spoil(files["spatial"], tmp_path / "b.h5ad", "bad_indices")
    monkeypatch.setattr(structure, "_CHUNK", 97)
    with pytest.raises(FileFormatError) as err:
        io.read(path, backed=True)
    assert_one_line(err, str(path), "X has column index", FIX)
    good = io.read(files["spatial"], backed=True)
    assert good.isbacked
    good.file.close()


# --------------------------------------------------------------------------------------------
# io.read
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_read_refuses_corrupt_h5ad(files, tmp_path, kind):
    path = _spoil(files["spatial"], tmp_path / "bad.h5ad", kind)
    with pytest.raises(FileFormatError) as err:
        io.read(path)
    assert_one_line(err, str(path), FIX)


@pytest.mark.parametrize("kind", ["bad_indices", "decreasing_indptr", "random_bytes"])
@pytest.mark.parametrize("where", ["layers/counts", "obsp/spatial_connectivities"])
def test_read_checks_layers_and_obsp(files, tmp_path, kind, where):
    src = tmp_path / "src.h5ad"
    adata = io.read(files["spatial"])
    adata.obsp["spatial_connectivities"] = sp.random(
        adata.n_obs, adata.n_obs, density=0.2, format="csr", random_state=0
    )
    io.write(adata, src, compression=None)
    path = _spoil(src, tmp_path / "bad.h5ad", kind, where=where)
    name = where.split("/")[0]
    with pytest.raises(FileFormatError) as err:
        io.read(path)
    assert_one_line(err, str(path), f"{name}[", FIX)


@pytest.mark.parametrize("kind", ["bad_indices", "short_indptr", "string_dtype", "random_bytes"])
@pytest.mark.parametrize("backed", [False, True])
def test_read_refuses_corrupt_h5mu(files, tmp_path, kind, backed):
    path = _spoil(files["mosaic"], tmp_path / "bad.h5mu", kind, where="mod/rna/X")
    with pytest.raises(FileFormatError) as err:
        io.read(path, backed=backed)
    assert_one_line(err, str(path), FIX)


def test_read_of_sound_files_is_unchanged(files):
    adata = io.read(files["spatial"])
    assert adata.X.nnz > 0 and adata.layers["counts"].shape == adata.shape
    assert io.read_mudata(files["mosaic"]).n_obs == 200


def test_backed_reads_only_hdf5(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("cell,g1\nc1,1\n")
    with pytest.raises(InputError, match=r"backed=True reads \.h5ad or \.h5mu"):
        io.read(path, backed=True)


# --------------------------------------------------------------------------------------------
# the CLI: exit 2, one line, no output
# --------------------------------------------------------------------------------------------
def _commands(bad: Path, files: dict[str, Path], out: Path) -> dict[str, list[str]]:
    ref, sp_ = str(files["reference"]), str(files["spatial"])
    return {
        "inspect": ["inspect", str(bad)],
        "neighbors": ["neighbors", str(bad), "--out", str(out)],
        "impute": ["impute", str(bad), "-o", str(out)],
        "map": ["map", ref, str(bad), "-o", str(out)],
        "map_sc": ["map", str(bad), sp_, "-o", str(out)],
        "align": ["align", sp_, str(bad), "-o", str(out)],
    }


@pytest.mark.parametrize("kind", ["random_bytes", "bad_indices", "truncated"])
@pytest.mark.parametrize("command", ["inspect", "neighbors", "impute", "map", "map_sc", "align"])
def test_cli_refuses_corrupt_h5ad(files, tmp_path, capsys, kind, command):
    bad = _spoil(files["spatial"], tmp_path / "bad.h5ad", kind)
    out = tmp_path / "out" / "result.h5ad"
    code = main(_commands(bad, files, out)[command])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "bad.h5ad" in err and FIX in err, err
    assert not out.exists()
    assert not list(tmp_path.rglob(".tmp-*")), list(tmp_path.rglob("*"))


@pytest.mark.parametrize("kind", ["random_bytes", "decreasing_indptr", "truncated"])
def test_cli_integrate_refuses_corrupt_h5mu(files, tmp_path, capsys, kind):
    bad = _spoil(files["mosaic"], tmp_path / "bad.h5mu", kind, where="mod/rna/X")
    out = tmp_path / "out.h5mu"
    code = main(["integrate", str(bad), "-o", str(out), "--no-plot"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and FIX in err, err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_mosaic_backed_blocks_are_checked_before_slicing():
    """Rows read from a backed file (opened without cellweave.io) are checked per block."""
    from cellweave.mosaic.data import _read_backed

    source = _csr(8, 5)
    rows, cols = np.array([3, 0, -1, 2]), np.array([0, 2])  # -1: an empty row
    good = _read_backed(source, rows, cols, lambda block: block)
    assert good.shape == (4, 2)
    source.indices[source.indptr[2]] = 40  # a garbled column index in row 2
    with pytest.raises(FileFormatError) as err:
        _read_backed(source, rows, cols, lambda block: block)
    assert_one_line(err, "backed file", "column index 40", FIX)
