"""The CLI as a new user meets it: help, the demo, and bad inputs -> one line, exit 2."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from cellweave.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in err.lower(), err


def counts_adata(n_obs: int = 30, n_vars: int = 12, *, spatial: bool = True) -> ad.AnnData:
    rng = np.random.default_rng(0)
    adata = ad.AnnData(sparse.csr_matrix(rng.poisson(2.0, (n_obs, n_vars)).astype(np.float32)))
    adata.obs_names = [f"spot{i}" for i in range(n_obs)]
    adata.var_names = [f"g{j}" for j in range(n_vars)]
    if spatial:
        side = int(np.ceil(np.sqrt(n_obs)))
        grid = np.array([(i % side, i // side) for i in range(n_obs)], dtype=float)
        adata.obsm["spatial"] = grid
    return adata


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_help_lists_subcommands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in ("demo", "simulate", "inspect", "neighbors"):
        assert name in out


@pytest.mark.parametrize(
    "args",
    [("demo",), ("simulate", "spatial"), ("simulate", "mosaic"), ("inspect",), ("neighbors",)],
)
def test_subcommand_help(capsys, args):
    code, out, _ = run(capsys, *args, "--help")
    assert code == 0
    assert "Usage" in out


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "inspect", str(tmp_path / "nope.h5ad"))
    assert_one_line_error(code, err, "nope.h5ad", "not exist")


def test_wrong_extension(capsys, tmp_path):
    path = tmp_path / "data.xyz"
    path.write_text("hello")
    code, _, err = run(capsys, "inspect", str(path))
    assert_one_line_error(code, err, ".xyz")


def test_corrupt_h5ad(capsys, tmp_path):
    path = tmp_path / "broken.h5ad"
    path.write_bytes(b"not an hdf5 file at all")
    code, _, err = run(capsys, "inspect", str(path))
    assert_one_line_error(code, err, "broken.h5ad")


def test_normalized_matrix_where_counts_required(capsys, tmp_path):
    adata = counts_adata()
    adata.X = np.log1p(adata.X.toarray() / 3.0)
    path = tmp_path / "lognorm.h5ad"
    adata.write_h5ad(path)
    code, _, err = run(capsys, "inspect", str(path), "--counts")
    assert_one_line_error(code, err, "counts")


def test_nan_values(capsys, tmp_path):
    adata = counts_adata()
    X = adata.X.toarray()
    X[3, 4] = np.nan
    adata.X = X
    path = tmp_path / "nan.h5ad"
    adata.write_h5ad(path)
    code, _, err = run(capsys, "inspect", str(path))
    assert_one_line_error(code, err, "nan")


def test_no_spatial_coordinates(capsys, tmp_path):
    path = tmp_path / "nospatial.h5ad"
    counts_adata(spatial=False).write_h5ad(path)
    code, _, err = run(capsys, "neighbors", str(path), "--out", str(tmp_path / "out.h5ad"))
    assert_one_line_error(code, err, "spatial")
    assert not (tmp_path / "out.h5ad").exists()


def test_bad_option_value_is_usage_error(capsys):
    code, _, err = run(capsys, "neighbors", "x.h5ad", "--out", "y.h5ad", "--max-order", "0")
    assert code == 2
    assert "Traceback" not in err


def test_inspect_good_file_reports(capsys, tmp_path):
    path = tmp_path / "good.h5ad"
    counts_adata().write_h5ad(path)
    code, out, err = run(capsys, "inspect", str(path), "--counts", "--spatial")
    assert code == 0, err
    assert "30 obs x 12 vars" in out
    assert "raw counts" in out


def test_neighbors_writes_graph_and_keeps_input(capsys, tmp_path):
    path = tmp_path / "grid.h5ad"
    counts_adata(n_obs=100).write_h5ad(path)
    before = sha(path)
    out = tmp_path / "grid_graph.h5ad"
    code, _stdout, err = run(
        capsys,
        "neighbors",
        str(path),
        "--out",
        str(out),
        "--max-order",
        "2",
        "--plot",
        str(tmp_path / "graph.png"),
    )
    assert code == 0, err
    assert sha(path) == before
    result = ad.read_h5ad(out)
    order = result.obsp["spatial_order"]
    # interior spot of the 10 x 10 square grid: 4 neighbours at order 1, 8 at order 2
    interior = 5 * 10 + 5
    row = order[interior].toarray().ravel()
    assert (row == 1).sum() == 4
    assert (row == 2).sum() == 8
    assert (tmp_path / "graph.png").stat().st_size > 0


def test_neighbors_refuses_to_overwrite_input(capsys, tmp_path):
    path = tmp_path / "grid.h5ad"
    counts_adata().write_h5ad(path)
    before = sha(path)
    code, _, err = run(capsys, "neighbors", str(path), "--out", str(path), "--overwrite")
    assert_one_line_error(code, err, "input")
    assert sha(path) == before


def test_existing_output_needs_overwrite(capsys, tmp_path):
    path = tmp_path / "grid.h5ad"
    counts_adata().write_h5ad(path)
    out = tmp_path / "exists.h5ad"
    out.write_text("keep me")
    code, _, err = run(capsys, "neighbors", str(path), "--out", str(out))
    assert_one_line_error(code, err, "exists", "--overwrite")
    assert out.read_text() == "keep me"


def test_simulate_spatial_and_mosaic(capsys, tmp_path):
    code, _, err = run(
        capsys,
        "simulate",
        "spatial",
        "--out",
        str(tmp_path / "sim"),
        "--n-spots",
        "120",
        "--n-genes",
        "60",
        "--n-ref-cells",
        "80",
    )
    assert code == 0, err
    spatial = ad.read_h5ad(tmp_path / "sim" / "spatial.h5ad")
    assert spatial.shape == (120, 60)
    assert "true_expression" in spatial.layers
    code, _, err = run(
        capsys,
        "simulate",
        "mosaic",
        "--out",
        str(tmp_path / "m.h5mu"),
        "--n-cells",
        "150",
        "--n-genes",
        "40",
        "--n-peaks",
        "80",
        "--batch",
        "paired=rna+atac",
        "--batch",
        "cite=rna+protein",
    )
    assert code == 0, err
    import mudata as md

    mdata = md.read_h5mu(tmp_path / "m.h5mu")
    assert set(mdata.mod) == {"rna", "atac", "protein"}
    assert set(mdata.obs["batch"]) == {"paired", "cite"}


def test_simulate_bad_batch_spec(capsys, tmp_path):
    code, _, err = run(
        capsys, "simulate", "mosaic", "--out", str(tmp_path / "m.h5mu"), "--batch", "paired"
    )
    assert code == 2
    assert "NAME=MOD" in err


def test_demo_small(capsys, tmp_path):
    out = tmp_path / "demo"
    code, _stdout, err = run(
        capsys, "demo", "--out", str(out), "--n-spots", "300", "--n-cells", "400"
    )
    assert code == 0, err
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert {"step", "measure", "value"} <= set(summary.columns)
    assert len(summary) >= 8
    pngs = list(out.glob("*.png"))
    assert len(pngs) >= 3
    assert all(p.stat().st_size > 1000 for p in pngs)


def test_console_script_entry_point_one_line(tmp_path):
    """The real process: exit status 2 and a single stderr line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "cellweave", "inspect", str(tmp_path / "missing.h5ad")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_param_values_are_parsed():
    import click

    from cellweave.cli._common import parse_params

    params = parse_params(("a=1", "b=0.5", "c=x", "d=true", 'e={"atac": 0.25}', "f=[64, 32]"))
    assert params == {"a": 1, "b": 0.5, "c": "x", "d": True, "e": {"atac": 0.25}, "f": [64, 32]}
    with pytest.raises(click.BadParameter, match="not valid JSON"):
        parse_params(("e={atac: 0.25}",))
    with pytest.raises(click.BadParameter, match="KEY=VALUE"):
        parse_params(("novalue",))
