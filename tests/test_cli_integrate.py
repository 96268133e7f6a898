"""``cellweave integrate`` on small simulated mosaics: outputs, metrics JSON, UMAP, errors."""

from __future__ import annotations

import json

import anndata as ad
import mudata as md
import numpy as np
import pytest
from click.testing import CliRunner

from cellweave import io
from cellweave.cli.integrate import integrate
from cellweave.errors import CellweaveError, InputError, MissingKeyError
from cellweave.metrics.pcr import pcr_comparison
from cellweave.mosaic import unintegrated_embedding
from cellweave.sim import simulate_mosaic

FAST = ["--n-latent", "6", "--param", "encoder_hidden=32", "--param", "decoder_hidden=16"]


@pytest.fixture(scope="module")
def mosaic_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "mosaic.h5mu"
    mdata = simulate_mosaic(
        n_cells=300, n_genes=50, n_peaks=120, n_cell_types=3, latent_dim=3, random_state=0
    )
    io.write(mdata, path)
    return path


def _invoke(*args: str):
    return CliRunner().invoke(integrate, list(args), catch_exceptions=True)


def test_integrate_mosaic_with_metrics_and_umap(tmp_path, mosaic_file):
    out, metrics, png = tmp_path / "out.h5mu", tmp_path / "m.json", tmp_path / "umap.png"
    result = _invoke(
        str(mosaic_file), "-o", str(out), "--batch-key", "batch", "--label-key", "cell_type",
        "--labelled-fraction", "0.1", "--max-epochs", "3", "--metrics-json", str(metrics),
        "--plot", str(png), *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    mdata = md.read_h5mu(out)
    assert mdata.obsm["X_cellweave"].shape == (300, 6)
    assert "cellweave_label" in mdata.obs and "cellweave_attention" in mdata.obsm
    assert "_cellweave_labelled" not in mdata.obs
    report = json.loads(metrics.read_text())
    assert set(report) == {"metrics", "label_transfer", "seconds", "embedding"}
    assert report["embedding"] == "X_cellweave"
    for key in ("nmi", "ari", "asw_label", "clisi", "isolated_labels", "asw_batch", "ilisi",
                "kbet", "graph_connectivity", "bio", "batch", "total"):  # fmt: skip
        assert 0.0 <= report["metrics"][key] <= 1.0 or np.isnan(report["metrics"][key])
    assert 0.0 <= report["label_transfer"]["balanced_accuracy"] <= 1.0
    assert "model_balanced_accuracy" in report["label_transfer"]
    assert png.stat().st_size > 1000
    # Benchmarker's scale: PCR comparison against the unintegrated PCA + LSI embedding, the
    # batch score the mean of five
    scores = report["metrics"]
    pre = unintegrated_embedding(md.read_h5mu(mosaic_file))
    batches = mdata.obs["batch"].astype(str).to_numpy()
    assert scores["pcr_comparison"] == pytest.approx(
        pcr_comparison(pre, mdata.obsm["X_cellweave"], batches), abs=1e-6
    )
    five = ("asw_batch", "ilisi", "kbet", "graph_connectivity", "pcr_comparison")
    assert scores["batch"] == pytest.approx(np.nanmean([scores[k] for k in five]))
    assert "kept the labels of" in result.output


def test_integrate_one_modality_h5ad(tmp_path, mosaic_file):
    rna = md.read_h5mu(mosaic_file)["rna"]
    path = tmp_path / "rna.h5ad"
    rna.write_h5ad(path)
    out = tmp_path / "rna_out.h5ad"
    result = _invoke(
        str(path), "-o", str(out), "--modality", "rna", "--max-epochs", "2", "--no-plot", *FAST
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert ad.read_h5ad(out).obsm["X_cellweave"].shape == (rna.n_obs, 6)
    assert not (tmp_path / "rna_out_umap.png").exists()


def test_transport_source_moves_only_those_batches(tmp_path, mosaic_file):
    out, metrics = tmp_path / "ot.h5mu", tmp_path / "ot.json"
    result = _invoke(
        str(mosaic_file), "-o", str(out), "--label-key", "cell_type", "--max-epochs", "3",
        "--labelled-fraction", "0", "--transport-source", "atac_only",
        "--metrics-json", str(metrics), "--no-plot", *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    mdata = md.read_h5mu(out)
    moved = mdata.obs["batch"].astype(str).to_numpy() == "atac_only"
    base, ot = mdata.obsm["X_cellweave"], mdata.obsm["X_cellweave_ot"]
    np.testing.assert_array_equal(ot[~moved], base[~moved])
    assert np.abs(ot[moved] - base[moved]).max() > 1e-3
    info = mdata.uns["cellweave_transport"]
    assert list(info["params"]["source"]) == ["atac_only"] and info["n_moved"] == moved.sum()
    report = json.loads(metrics.read_text())
    assert report["embedding"] == "X_cellweave_ot"
    assert "moved" in result.output
    # --labelled-fraction 0: trained without labels, which only score the result
    assert "training unsupervised" in result.output
    assert "model_balanced_accuracy" not in report["label_transfer"]
    assert not set(mdata.obs["cellweave_label"].astype(str)) & set(
        mdata.obs["cell_type"].astype(str)
    )


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        (["--transport-source", "atac_only,nope"], InputError, "'nope' is not in obs['batch']"),
        (["--transport-source", ","], InputError, "no source batch"),
        (["--batch-key", "sample"], MissingKeyError, "--batch-key"),
        (["--modality", "rna"], InputError, ".h5ad"),
        (["--label-key", "kind"], MissingKeyError, "--label-key"),
    ],
)
def test_bad_inputs_raise_one_line_errors(tmp_path, mosaic_file, args, error, words):
    result = _invoke(str(mosaic_file), "-o", str(tmp_path / "x.h5mu"), "--no-plot", *args)
    assert isinstance(result.exception, error) and isinstance(result.exception, CellweaveError)
    assert words in str(result.exception) and "\n" not in str(result.exception)


def test_usage_errors(tmp_path, mosaic_file):
    result = _invoke(str(mosaic_file), "-o", str(tmp_path / "x.h5mu"), "--labelled-fraction", "0.1")
    assert result.exit_code == 2 and "--label-key" in result.output
    result = _invoke(str(mosaic_file), "-o", str(mosaic_file))
    assert "input file" in str(result.exception)


def test_list_methods_prints_the_modality_kinds_from_the_registry():
    from cellweave.mosaic.kinds import MODALITY_KINDS

    result = _invoke("--list-methods")
    assert result.exit_code == 0, result.output
    assert list(MODALITY_KINDS) == ["rna", "atac", "protein", "methylation"]
    for name in MODALITY_KINDS:
        assert name in result.output


def test_unknown_modality_kind_is_one_line_before_reading(tmp_path):
    from cellweave.errors import InvalidOptionError

    missing = tmp_path / "absent.h5ad"  # never read: the kind is checked first
    result = _invoke(str(missing), "-o", str(tmp_path / "x.h5mu"), "--modality", "banana")
    assert isinstance(result.exception, InvalidOptionError)
    message = str(result.exception)
    assert "'banana'" in message and "methylation" in message and "\n" not in message


def test_missing_path_or_out_is_a_usage_error(tmp_path, mosaic_file):
    assert _invoke().exit_code == 2
    assert _invoke(str(mosaic_file)).exit_code == 2
