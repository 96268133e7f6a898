"""The CLI's error contract (issue 16): one line on stderr and exit 2 for every bad input,
found before any reading or training; library warnings folded into that line; output paths
checked up front (cellweave.io.check_output_path)."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import anndata as ad
import mudata as md
import numpy as np
import pytest
from scipy import sparse

from cellweave.cli import main, one_line
from cellweave.errors import FileFormatError, InputError
from cellweave.io import check_distinct, check_output_path, h5_kind


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str, *words: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("cellweave: error: ") and "error::" not in err, err
    assert ".tmp-" not in err and "Traceback" not in err, err
    for word in words:
        assert word.lower() in err.lower(), err
    return lines[0]


def small(n_obs: int = 25, n_vars: int = 10) -> ad.AnnData:
    rng = np.random.default_rng(0)
    adata = ad.AnnData(sparse.csr_matrix(rng.poisson(2.0, (n_obs, n_vars)).astype(np.float32)))
    adata.obs_names = [f"s{i}" for i in range(n_obs)]
    adata.var_names = [f"g{j}" for j in range(n_vars)]
    adata.obsm["spatial"] = np.array([(i % 5, i // 5) for i in range(n_obs)], dtype=float)
    adata.obs["batch"] = ["a", "b"] * (n_obs // 2) + ["a"] * (n_obs % 2)
    return adata


@pytest.fixture
def h5ad(tmp_path) -> Path:
    path = tmp_path / "in.h5ad"
    small().write_h5ad(path)
    return path


def never(*args, **kwargs):
    raise AssertionError("the input was read (or a model trained) before the check")


# --- usage errors ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("neighbors", "x.h5ad", "--out", "y.h5ad", "--bogus"), ("--bogus", "--help")),
        (("neighbors", "--out", "y.h5ad"), ("missing argument", "path")),
        (("neighbors", "x.h5ad", "--out", "y.h5ad", "--method", "zz"), ("'zz' is not one of",)),
        (("neighbors", "x.h5ad", "--out", "y.h5ad", "--n-neighbors", "abc"), ("abc",)),
        (("nosuchcommand",), ("nosuchcommand", "cellweave --help")),
        (("impute", "x.h5ad", "-o", "y.h5ad", "--resume"), ("--checkpoint-dir",)),
    ],
)
def test_click_usage_errors_are_one_line(capsys, args, words):
    code, _, err = run(capsys, *args)
    one_line_error(code, err, *words)
    assert "Usage:" not in err and "Try '" not in err


# --- numbers in range while parsing, before any file is read --------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("integrate", "absent.h5mu", "-o", "o.h5mu", "--max-epochs", "0"),
        ("integrate", "absent.h5mu", "-o", "o.h5mu", "--max-epochs", "-1"),
        ("integrate", "absent.h5mu", "-o", "o.h5mu", "--n-latent", "0"),
        ("integrate", "absent.h5mu", "-o", "o.h5mu", "--n-clusters", "0"),
        ("integrate", "absent.h5mu", "-o", "o.h5mu", "--labelled-fraction", "1"),
        ("neighbors", "absent.h5ad", "--out", "o.h5ad", "--radius", "nan"),
        ("neighbors", "absent.h5ad", "--out", "o.h5ad", "--radius", "-2"),
        ("impute", "absent.h5ad", "-o", "o.h5ad", "--seed", "-1"),
        ("impute", "absent.h5ad", "--evaluate", "--seeds", "0,-1"),
        ("map", "absent.h5ad", "absent.h5ad", "--evaluate", "--folds", "1"),
        ("simulate", "spatial", "--out", "sim", "--dropout", "1.5"),
        ("simulate", "spatial", "--out", "sim", "--batch-effect", "nan"),
        ("simulate", "spatial", "--out", "sim", "--cells-per-spot", "0.5"),
    ],
)
def test_numbers_out_of_range_are_refused_while_parsing(capsys, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *args)
    line = one_line_error(code, err, args[-2])
    assert "does not exist" not in line  # refused before the (absent) input is looked at
    assert sorted(os.listdir(tmp_path)) == []


def test_simulate_mosaic_refuses_a_batch_given_twice(capsys, tmp_path):
    out = tmp_path / "m.h5mu"
    args = ("simulate", "mosaic", "--out", out, "--batch", "a=rna", "--batch", "a=atac")
    code, _, err = run(capsys, *args)
    one_line_error(code, err, "batch 'a' is given twice", "a=rna", "a=atac")
    assert not out.exists()


# --- warnings become the error line ---------------------------------------------------------
@pytest.mark.parametrize("axis", ["obs", "var"])
def test_duplicate_names_are_one_line_not_a_warning(capsys, tmp_path, axis):
    adata = small()
    names = list(getattr(adata, f"{axis}_names"))
    names[1] = names[0]
    setattr(adata, f"{axis}_names", names)
    path = tmp_path / "dup.h5ad"
    adata.write_h5ad(path)
    out = tmp_path / "o.h5ad"
    code, _, err = run(capsys, "neighbors", path, "--out", out)  # used to run (exit 0)
    one_line_error(code, err, "duplicated", f"{axis}_names_make_unique")
    assert "UserWarning" not in err and not out.exists()


def test_h5ad_renamed_h5mu_says_rename(capsys, tmp_path):
    path = tmp_path / "data.h5mu"
    small().write_h5ad(path)
    code, _, err = run(capsys, "inspect", path)
    one_line_error(code, err, "is an AnnData file named .h5mu", "rename it to data.h5ad")


def test_h5mu_renamed_h5ad_says_rename(capsys, tmp_path):
    path = tmp_path / "data.h5ad"
    md.MuData({"rna": small()}).write_h5mu(tmp_path / "real.h5mu")
    os.replace(tmp_path / "real.h5mu", path)
    code, _, err = run(capsys, "impute", path, "-o", tmp_path / "o.h5ad")
    one_line_error(code, err, "is a MuData file named .h5ad", "rename it to data.h5mu")


def test_library_warnings_are_silenced(capsys, h5ad, tmp_path):
    def noisy(*args, **kwargs):
        import warnings

        warnings.warn("a library notice", UserWarning, stacklevel=1)
        return small()

    with mock.patch("cellweave.io.read_spatial", noisy):
        code, _, err = run(capsys, "neighbors", h5ad, "--out", tmp_path / "o.h5ad")
    assert code == 0 and err == ""


# --- messages --------------------------------------------------------------------------------
def test_one_line_drops_temp_names_and_double_prefixes():
    text = "error: could not write /data/.tmp-0000abcd12ef-out.h5ad:\n  disk full"
    assert one_line(text) == "could not write /data/out.h5ad: disk full"


def test_os_error_without_a_file_name_has_no_double_colon(capsys, h5ad, tmp_path):
    with mock.patch("cellweave.cli.neighbors.read_input", side_effect=OSError("disk on fire")):
        code, _, err = run(capsys, "neighbors", h5ad, "--out", tmp_path / "o.h5ad")
    one_line_error(code, err, "disk on fire", "check the path")


def test_os_error_names_the_output_not_its_temporary(capsys, h5ad, tmp_path):
    temp = tmp_path / ".tmp-00001234abcd-o.h5ad"
    error = PermissionError(13, "Permission denied", str(temp))
    with mock.patch("cellweave.io.write", side_effect=error):
        code, _, err = run(capsys, "neighbors", h5ad, "--out", tmp_path / "o.h5ad")
    line = one_line_error(code, err, "permission denied")
    assert str(tmp_path / "o.h5ad") in line


def test_coordinate_message_has_no_placeholder():
    from cellweave.validate import check_coordinates

    with pytest.raises(InputError) as info:
        check_coordinates(np.zeros(4), name="coords")
    assert " d coordinate" not in str(info.value) and "one or more" in str(info.value)


# --- output paths checked up front ----------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "out", "words"),
    [
        ("impute", "o.h5mu", ("must be an AnnData file ending in .h5ad", "o.h5ad")),
        ("align", "o.txt", (".h5ad",)),
        ("map", "o", (".h5ad",)),
    ],
)
def test_wrong_output_extension_is_found_before_reading(
    capsys, h5ad, tmp_path, command, out, words
):
    inputs = [h5ad, h5ad] if command in ("align", "map") else [h5ad]
    with mock.patch(f"cellweave.cli.{command}.read_input", side_effect=never):
        code, _, err = run(capsys, command, *inputs, "-o", tmp_path / out)
    one_line_error(code, err, "--out", *words)


def test_integrate_output_kind_follows_the_input(capsys, tmp_path):
    mosaic = tmp_path / "m.h5mu"
    md.MuData({"rna": small()}).write_h5mu(mosaic)
    with mock.patch("cellweave.cli.integrate.read_input", side_effect=never):
        code, _, err = run(capsys, "integrate", mosaic, "-o", tmp_path / "o.h5ad")
    one_line_error(code, err, "must be a MuData file ending in .h5mu", "o.h5mu")


def test_save_model_folder_not_empty_is_found_before_training(capsys, tmp_path):
    mosaic = tmp_path / "m.h5mu"
    md.MuData({"rna": small()}).write_h5mu(mosaic)
    model = tmp_path / "model"
    model.mkdir()
    (model / "keep.txt").write_text("x")
    args = ("integrate", mosaic, "-o", tmp_path / "o.h5mu", "--save-model", model, "--no-plot")
    with mock.patch("cellweave.cli.integrate.read_input", side_effect=never):
        code, _, err = run(capsys, *args)
    one_line_error(code, err, "--save-model", "not empty", "--overwrite")


def _readonly(folder: Path):
    """``folder`` not writable, as a non-root user sees a 0o555 folder (tests run as root)."""
    real = os.access

    def writable(path: Path) -> bool:
        return Path(path).resolve() != folder.resolve() and real(path, os.W_OK | os.X_OK)

    return mock.patch("cellweave.io.paths._writable", writable)


def test_read_only_output_folder_is_found_before_reading(capsys, h5ad, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with _readonly(folder), mock.patch("cellweave.cli.impute.read_input", side_effect=never):
        code, _, err = run(capsys, "impute", h5ad, "-o", folder / "o.h5ad")
    one_line_error(code, err, "no write permission", str(folder))


def test_impute_plot_into_read_only_folder_writes_nothing(capsys, h5ad, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    out = tmp_path / "o.h5ad"
    args = ("impute", h5ad, "-o", out, "--method", "knn", "--plot", folder / "p.png")
    with _readonly(folder):
        code, _, err = run(capsys, *args)
    one_line_error(code, err, "--plot", "no write permission")
    assert not out.exists()  # used to be written before the plot failed


@pytest.mark.parametrize(
    ("plot", "words"),
    [("p.txt", ("must be a figure", ".png")), ("dir.png", ("is a folder",))],
)
def test_bad_plot_path_is_found_before_reading(capsys, h5ad, tmp_path, plot, words):
    out = tmp_path / "o.h5ad"
    (tmp_path / "dir.png").mkdir()
    args = ("neighbors", h5ad, "--out", out, "--plot", tmp_path / plot)
    with mock.patch("cellweave.cli.neighbors.read_input", side_effect=never):
        code, _, err = run(capsys, *args)
    one_line_error(code, err, *words)


def test_two_outputs_on_one_path_are_refused(capsys, tmp_path):
    mosaic = tmp_path / "m.h5mu"
    md.MuData({"rna": small()}).write_h5mu(mosaic)
    same = tmp_path / "x.png"
    args = ("integrate", mosaic, "-o", tmp_path / "o.h5mu", "--label-key", "batch")
    with mock.patch("cellweave.cli.integrate.read_input", side_effect=never):
        code, _, err = run(capsys, *args, "--plot", same, "--metrics-json", same)
    one_line_error(code, err, "--metrics-json and --plot are the same path")


def test_absent_gene_for_the_plot_is_found_before_imputing(capsys, h5ad, tmp_path):
    out = tmp_path / "o.h5ad"
    args = ("impute", h5ad, "-o", out, "--plot", tmp_path / "p.png", "--gene", "nope")
    with mock.patch("cellweave.impute.impute", side_effect=never):
        code, _, err = run(capsys, *args)
    one_line_error(code, err, "'nope'", "--gene")
    assert not out.exists()


def test_absent_genes_to_predict_are_found_before_mapping(capsys, h5ad, tmp_path):
    args = ("map", h5ad, h5ad, "-o", tmp_path / "o.h5ad", "--genes", "g1,nope")
    with mock.patch("cellweave.mapping.api.map_cells", side_effect=never):
        code, _, err = run(capsys, *args)
    one_line_error(code, err, "--genes", "nope")


# --- cellweave.io.check_output_path ---------------------------------------------------------
def test_check_output_path_accepts_new_files_and_folders(tmp_path):
    assert check_output_path(tmp_path / "a" / "b" / "o.h5ad", kind="h5ad") == (
        tmp_path / "a" / "b" / "o.h5ad"
    )
    check_output_path(tmp_path / "o.H5MU", kind="h5mu")
    check_output_path(tmp_path / "fig.pdf", kind="figure")
    check_output_path(tmp_path / "scores", kind="file")
    check_output_path(tmp_path, kind="folder")  # an existing writable folder
    assert not (tmp_path / "a").exists()  # nothing is created


@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("o.h5mu", "h5ad", "ending in .h5ad"),
        ("o.h5ad", "h5mu", "ending in .h5mu"),
        ("o.txt", "figure", "must be a figure"),
        ("sub", "h5ad", "ending in .h5ad"),
        ("file.txt/o.h5ad", "h5ad", "is a file, not a folder"),
        ("file.txt", "folder", "is a file, not a folder"),
        ("file.txt", "file", "already exists"),
        ("sub", "file", "is a folder"),
        ("full", "new_folder", "not empty"),
    ],
)
def test_check_output_path_refuses(tmp_path, name, kind, words):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileFormatError, match=words):
        check_output_path(tmp_path / name, kind=kind, label="--out")


def test_check_output_path_refuses_an_input_even_with_overwrite(tmp_path):
    path = tmp_path / "in.h5ad"
    path.write_text("x")
    with pytest.raises(FileFormatError, match="is an input file"):
        check_output_path(path, kind="h5ad", inputs=[path], overwrite=True)
    check_output_path(path, kind="h5ad", overwrite=True)  # not an input: may be replaced


def test_check_output_path_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with _readonly(folder), pytest.raises(FileFormatError, match="no write permission"):
        check_output_path(folder / "new" / "o.h5ad", kind="h5ad")


def test_check_distinct_and_h5_kind(tmp_path):
    check_distinct({"--out": tmp_path / "a.h5ad", "--plot": tmp_path / "a.png", "--x": None})
    with pytest.raises(FileFormatError, match="--plot and --out are the same path"):
        check_distinct({"--out": tmp_path / "a.h5ad", "--plot": tmp_path / "." / "a.h5ad"})
    assert (h5_kind("x.H5MU"), h5_kind("x.h5ad"), h5_kind("counts.csv")) == ("h5mu",) + (
        "h5ad",
    ) * 2


@pytest.mark.parametrize("command", [("demo",), ("simulate", "spatial")])
def test_folder_outputs_refuse_a_file_up_front(capsys, tmp_path, command):
    path = tmp_path / "a_file.txt"
    path.write_text("keep me")
    code, _, err = run(capsys, *command, "--out", path)
    one_line_error(code, err, "is a file, not a folder")
    assert path.read_text() == "keep me" and sorted(os.listdir(tmp_path)) == ["a_file.txt"]


@pytest.mark.parametrize("args", [(), ("simulate",)])
def test_a_group_without_subcommand_prints_its_help(capsys, args):
    code, out, err = run(capsys, *args)
    assert code == 0 and out.startswith("Usage: cellweave") and err == ""
