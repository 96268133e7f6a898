"""``cellweave map``: mapping files, evaluating methods, and one-line errors for bad input."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner

from cellweave import io
from cellweave.cli.map import map_cmd
from cellweave.sim import simulate_spatial


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("map")
    sp, ref = simulate_spatial(n_spots=150, n_genes=40, n_ref_cells=200, random_state=5)
    sp = sp[:, 5:].copy()  # the panel lacks genes 0-4
    for adata in (sp, ref):
        del adata.uns["sim"]
    io.write(sp, root / "sp.h5ad")
    io.write(ref, root / "sc.h5ad")
    return root


def invoke(*args: str):
    """Run the command as `cellweave map` does: CellweaveErrors -> one line, exit 2."""
    from cellweave.cli import main
    from cellweave.cli.app import cli

    if "map" not in cli.commands:  # registered by the lead in cli/app.py
        cli.add_command(map_cmd)
    return main(["map", *args])


def test_command_is_named_map():
    assert map_cmd.name == "map"
    result = CliRunner().invoke(map_cmd, ["--help"])
    assert result.exit_code == 0 and "--cell-type-key" in result.output


def test_map_writes_mapping_predictions_and_fractions(files):
    out = files / "out.h5ad"
    code = invoke(
        str(files / "sc.h5ad"),
        str(files / "sp.h5ad"),
        "-o",
        str(out),
        "--cell-type-key",
        "cell_type",
        "--param",
        "epsilon=0.2",
    )
    assert code == 0
    result = ad.read_h5ad(out)
    assert result.uns["mapping"]["params"]["epsilon"] == 0.2
    predicted = result.obsm["predicted_genes"]
    assert list(predicted.columns) == [f"gene_{i:04d}" for i in range(5)]
    np.testing.assert_allclose(result.obsm["cell_type_fractions"].sum(1), 1.0)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--method", "nope"), ("unknown mapping method",)),
        (("--cell-type-key", "celltype"), ("celltype", "obs")),
        (("--genes", "gene_0000,zzz"), ("zzz",)),
    ],
)
def test_bad_input_is_one_line_exit_2(files, capsys, args, words):
    code = invoke(
        str(files / "sc.h5ad"), str(files / "sp.h5ad"), "-o", str(files / "x.h5ad"), *args
    )
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    for word in words:
        assert word.lower() in err.lower()


def test_no_shared_genes_is_one_line_exit_2(files, tmp_path, capsys):
    other = ad.read_h5ad(files / "sp.h5ad")
    other.var_names = [f"x{i}" for i in range(other.n_vars)]
    io.write(other, tmp_path / "other.h5ad")
    code = invoke(
        str(files / "sc.h5ad"), str(tmp_path / "other.h5ad"), "-o", str(tmp_path / "o.h5ad")
    )
    err = capsys.readouterr().err
    assert code == 2 and "share 0" in err and len(err.strip().splitlines()) == 1


def test_evaluate_writes_metrics_json(files, tmp_path):
    pytest.importorskip("cellweave.mapping.evaluate")
    path = tmp_path / "m.json"
    code = invoke(
        str(files / "sc.h5ad"),
        str(files / "sp.h5ad"),
        "--evaluate",
        "--folds",
        "3",
        "--methods",
        "ot,knn",
        "--metrics-json",
        str(path),
    )
    assert code == 0
    data = json.loads(path.read_text())
    assert data["folds"] == 3 and data["scheme"] == "normalized" and data["default"] == "ot"
    assert {"ot", "knn", "depth"} <= set(data["methods"])
    entry = data["methods"]["ot"]
    assert entry["kind"] == "cellweave" and entry["pcc"] > data["methods"]["depth"]["pcc"]
