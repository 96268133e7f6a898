"""tl.impute and `cellweave impute`: what a user calls, on the simulator."""

from __future__ import annotations

import hashlib
import json

import anndata as ad
import numpy as np
import pytest

import cellweave as cw
from cellweave.cli import main
from cellweave.errors import InputError, MissingKeyError, NotCountsError


@pytest.fixture(scope="module")
def tissue() -> ad.AnnData:
    # dropout=0: technical zeros shared by both molecule halves would bias the protocol
    spatial, _ = cw.sim.simulate_spatial(
        n_spots=300, n_genes=80, dropout=0.0, library_size=300.0, random_state=3
    )
    return spatial


def test_impute_writes_layer_and_params(tissue):
    adata = tissue.copy()
    out = cw.tl.impute(adata, method="rings", random_state=0)
    assert out is None
    imputed = adata.layers["imputed"]
    assert imputed.shape == adata.shape and imputed.dtype == np.float32
    proportions = np.expm1(imputed.astype(np.float64)) / 1e4
    np.testing.assert_allclose(proportions.sum(axis=1), 1.0, rtol=1e-4)
    params = adata.uns["impute"]["params"]
    assert params["method"] == "rings" and params["random_state"] == 0


def test_impute_copy_leaves_input(tissue):
    adata = tissue.copy()
    result = cw.tl.impute(adata, method="gene_mean", copy=True)
    assert "imputed" in result.layers and "imputed" not in adata.layers


def test_impute_reduces_error_to_truth(tissue):
    adata = tissue.copy()
    truth = cw.pp.log_normalize(adata.layers["true_expression"])
    raw = cw.pp.log_normalize(adata.X).toarray()
    cw.tl.impute(adata, method="rings")
    err_raw = np.mean((raw - truth) ** 2)
    err_imputed = np.mean((adata.layers["imputed"] - truth) ** 2)
    assert err_imputed < 0.5 * err_raw


def test_impute_rejects_normalized(tissue):
    adata = tissue.copy()
    adata.X = cw.pp.log_normalize(adata.X)
    with pytest.raises(NotCountsError, match="counts"):
        cw.tl.impute(adata, method="gene_mean")


def test_spatial_method_needs_coordinates(tissue):
    adata = tissue.copy()
    del adata.obsm["spatial"]
    with pytest.raises(MissingKeyError, match="spatial"):
        cw.tl.impute(adata, method="rings")
    cw.tl.impute(adata, method="gene_mean")  # non-spatial methods need none


def test_unknown_method(tissue):
    with pytest.raises(InputError, match="unknown imputation method"):
        cw.tl.impute(tissue.copy(), method="magic-wand")


def test_cli_impute_and_evaluate(tissue, tmp_path, capsys):
    path = tmp_path / "tissue.h5ad"
    tissue.write_h5ad(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    out = tmp_path / "imputed.h5ad"
    code = main(
        [
            "impute",
            str(path),
            "-o",
            str(out),
            "--method",
            "rings",
            "--plot",
            str(tmp_path / "gene.png"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "imputed" in ad.read_h5ad(out).layers
    assert (tmp_path / "gene.png").stat().st_size > 1000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest

    metrics = tmp_path / "m.json"
    code = main(
        [
            "impute",
            str(path),
            "--evaluate",
            "--methods",
            "raw,gene_mean,rings",
            "--seeds",
            "0,1",
            "--metrics-json",
            str(metrics),
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads(metrics.read_text())
    assert {"protocol", "default", "methods"} <= set(report)
    for name in ("raw", "gene_mean", "rings"):
        entry = report["methods"][name]
        assert {"kind", "deviance", "log_mse", "gene_pearson_median", "seconds"} <= set(entry)
    assert report["methods"]["rings"]["deviance"] < report["methods"]["raw"]["deviance"]


def test_cli_impute_errors(tissue, tmp_path, capsys):
    path = tmp_path / "nocoords.h5ad"
    adata = tissue.copy()
    del adata.obsm["spatial"]
    adata.write_h5ad(path)
    code = main(["impute", str(path), "-o", str(tmp_path / "o.h5ad"), "--method", "rings"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "spatial" in err
    code = main(["impute", str(path), "-o", str(tmp_path / "o.h5ad"), "--method", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown imputation method" in err
    code = main(["impute", str(path)])
    assert code == 2
    code = main(["impute", "--list-methods"])
    assert code == 0 and "gene_mean" in capsys.readouterr().out
