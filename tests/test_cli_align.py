"""``cellweave align`` end to end: files in, aligned file and overlay out; errors one line."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cellweave.cli import main
from cellweave.cli.align import align
from cellweave.cli.app import cli
from cellweave.sim import simulate_spatial


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """Make ``align`` a subcommand of the group even before the lead registers it."""
    monkeypatch.setitem(cli.commands, "align", align)


@pytest.fixture(scope="module")
def sections(tmp_path_factory):
    folder = tmp_path_factory.mktemp("align")
    spatial, _ = simulate_spatial(n_spots=200, grid="hex", n_genes=60, random_state=1)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(spatial.n_obs, 180, replace=False))
    moved = spatial[keep].copy()
    moved.X = sp.csr_matrix(rng.binomial(moved.X.toarray().astype(np.int64), 0.5).astype("f4"))
    truth = spatial.obsm["spatial"][keep]
    t = np.deg2rad(50.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    moved.obsm["spatial"] = truth @ rot.T + np.array([4.0, 9.0])
    path_a, path_b = folder / "a.h5ad", folder / "b.h5ad"
    spatial.write_h5ad(path_a)
    moved.write_h5ad(path_b)
    return path_a, path_b, truth


def run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_align_writes_aligned_section_and_plot(capsys, tmp_path, sections):
    path_a, path_b, truth = sections
    out, png = tmp_path / "out.h5ad", tmp_path / "overlay.png"
    code, stdout, err = run(capsys, "align", path_a, path_b, "-o", out, "--plot", png)
    assert code == 0, err
    assert "rotation" in stdout
    result = ad.read_h5ad(out)
    error = np.linalg.norm(result.obsm["spatial_aligned"] - truth, axis=1)
    assert np.median(error) < 0.5
    matching = result.uns["alignment"]["matching"]
    assert sp.issparse(matching) and matching.shape == (180, 200)
    assert result.uns["alignment"]["params"]["overlap"] == 0.7
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_align_options(capsys, tmp_path, sections):
    path_a, path_b, _ = sections
    out = tmp_path / "out.h5ad"
    code, _, err = run(
        capsys,
        "align",
        path_a,
        path_b,
        "-o",
        out,
        "--alpha",
        "0.3",
        "--overlap",
        "none",
        "--nonrigid",
        "--key-added",
        "xy",
    )
    assert code == 0, err
    params = ad.read_h5ad(out).uns["alignment"]["params"]
    assert params["alpha"] == 0.3 and params["overlap"] == "balanced" and params["nonrigid"]


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word.lower() in err.lower(), err


def test_missing_coordinates_is_one_line(capsys, tmp_path, sections):
    path_a, _, _ = sections
    bare = ad.read_h5ad(path_a)
    del bare.obsm["spatial"]
    path = tmp_path / "bare.h5ad"
    bare.write_h5ad(path)
    code, _, err = run(capsys, "align", path_a, path, "-o", tmp_path / "o.h5ad")
    one_line_error(code, err, "obsm['spatial']")


def test_existing_output_and_bad_overlap(capsys, tmp_path, sections):
    path_a, path_b, _ = sections
    out = tmp_path / "exists.h5ad"
    out.write_text("x")
    code, _, err = run(capsys, "align", path_a, path_b, "-o", out)
    one_line_error(code, err, "--overwrite")
    code, _, err = run(capsys, "align", path_a, path_b, "-o", tmp_path / "n.h5ad", "--overlap", "x")
    assert code == 2 and "--overlap" in err


def test_list_methods_prints_the_solver_registry(capsys):
    code, stdout, err = run(capsys, "align", "--list-methods")
    assert code == 0, err
    for word in ("fgw", "structure", "rigid", "nonrigid", "refine=5", "alpha=0.1"):
        assert word in stdout


@pytest.mark.parametrize(
    ("param", "words"),
    [
        ("bogus=1", ("bogus", "valid options")),
        ("refine=abc", ("refine='abc'", "integer")),
        ("n_init=0", ("n_init=0",)),
        ("alpha=0.3", ("--alpha",)),
        ("refine", ("key=value",)),
    ],
)
def test_bad_param_is_one_line_before_reading(capsys, tmp_path, param, words):
    missing = tmp_path / "absent.h5ad"  # never read: the options fail first
    args = ("-o", tmp_path / "o.h5ad", "--param", param)
    code, _, err = run(capsys, "align", missing, missing, *args)
    one_line_error(code, err, *words)


def test_overlap_out_of_range_is_one_line(capsys, tmp_path, sections):
    path_a, path_b, _ = sections
    args = ("-o", tmp_path / "o.h5ad", "--overlap", "1.5")
    code, _, err = run(capsys, "align", path_a, path_b, *args)
    one_line_error(code, err, "overlap=1.5")


def test_params_reach_the_solvers_and_key_added_names_the_entry(capsys, tmp_path, sections):
    path_a, path_b, truth = sections
    out = tmp_path / "out.h5ad"
    args = ("--param", "refine=2", "--param", "n_init=2", "--key-added", "xy")
    code, _, err = run(capsys, "align", path_a, path_b, "-o", out, *args)
    assert code == 0, err
    result = ad.read_h5ad(out)
    params = result.uns["xy"]["params"]
    assert params["refine"] == 2 and params["n_init"] == 2 and params["key_added"] == "xy"
    assert np.median(np.linalg.norm(result.obsm["xy"] - truth, axis=1)) < 0.5


def test_missing_paths_or_output_are_usage_errors(capsys, tmp_path, sections):
    path_a, path_b, _ = sections
    code, _, err = run(capsys, "align", path_a)
    assert code == 2 and "PATH_B" in err
    code, _, err = run(capsys, "align", path_a, path_b)
    assert code == 2 and "--out" in err


@pytest.fixture(scope="module")
def rna_protein(tmp_path_factory):
    from cellweave.align import simulate_rna_protein

    folder = tmp_path_factory.mktemp("rna_protein")
    rna, protein, truth = simulate_rna_protein(
        n_spots=300, angle=75.0, shift=(3.0, -8.0), random_state=4
    )
    path_a, path_b = folder / "rna.h5ad", folder / "protein.h5ad"
    rna.write_h5ad(path_a)
    protein.write_h5ad(path_b)
    return path_a, path_b, truth


def test_feature_pairs_auto_and_transfer_out(capsys, tmp_path, rna_protein):
    path_a, path_b, truth = rna_protein
    out, carried = tmp_path / "out.h5ad", tmp_path / "rna_with_protein.h5ad"
    args = ("--feature-pairs", "auto", "--transfer-out", carried)
    code, stdout, err = run(capsys, "align", path_a, path_b, "-o", out, *args)
    assert code == 0, err
    assert "30 feature pairs (auto) (A is the RNA section)" in stdout
    result = ad.read_h5ad(out)
    assert np.median(np.linalg.norm(result.obsm["spatial_aligned"] - truth, axis=1)) < 0.5
    assert result.uns["alignment"]["params"]["n_feature_pairs"] == 30
    rna = ad.read_h5ad(carried)
    assert rna.obsm["protein"].shape == (300, result.n_vars)
    assert set(rna.obs["protein_source"].cat.categories) == {"matched", "nearest", "none"}
    assert f"{rna.uns['protein']['n_matched']} matched" in stdout


def test_feature_pairs_table(capsys, tmp_path, rna_protein):
    path_a, path_b, truth = rna_protein
    pairs = ad.read_h5ad(path_b).uns["pairs"]
    table = tmp_path / "pairs.csv"
    table.write_text("gene,protein\n" + "".join(f"{g},{p}\n" for p, g in pairs.items()))
    out = tmp_path / "out.h5ad"
    code, stdout, err = run(capsys, "align", path_a, path_b, "-o", out, "--feature-pairs", table)
    assert code == 0, err
    assert "30 feature pairs (table)" in stdout
    result = ad.read_h5ad(out)
    assert np.median(np.linalg.norm(result.obsm["spatial_aligned"] - truth, axis=1)) < 0.5


def test_bad_feature_pairs_are_one_line(capsys, tmp_path, rna_protein, sections):
    path_a, path_b, _ = rna_protein
    out = tmp_path / "o.h5ad"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n")
    code, _, err = run(capsys, "align", path_a, path_b, "-o", out, "--feature-pairs", bad)
    one_line_error(code, err, "3 column")
    absent = tmp_path / "absent.csv"
    code, _, err = run(capsys, "align", path_a, path_b, "-o", out, "--feature-pairs", absent)
    one_line_error(code, err, "does not exist")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("".join(f"CD4,{p}\n" for p in ("ADT_CD4", "CD999", "x", "y", "z")))
    code, _, err = run(capsys, "align", path_a, path_b, "-o", out, "--feature-pairs", wrong)
    one_line_error(code, err, "'CD999'", "section B")
    sim_a, _, _ = sections  # gene_0000 ... on both sides of a protein file: no pair
    code, _, err = run(capsys, "align", sim_a, path_b, "-o", out, "--feature-pairs", "auto")
    one_line_error(code, err, "no gene-protein pair", "table")
