"""What the commands read: ``--coords`` wherever coordinates are read, ``--gene-case`` of
``map``, and the one-line warnings of ``impute`` (no coordinates) and ``map`` (normalized
input)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from cellweave import io
from cellweave.cli import main
from cellweave.sim import simulate_spatial


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A spatial data set as a counts CSV plus a coordinates CSV (no obsm), and a reference."""
    root = tmp_path_factory.mktemp("inputs")
    sp, ref = simulate_spatial(n_spots=80, n_genes=40, n_ref_cells=120, random_state=3)
    for adata in (sp, ref):
        del adata.uns["sim"]
    counts = pd.DataFrame(
        np.asarray(sp.X.toarray() if hasattr(sp.X, "toarray") else sp.X),
        index=sp.obs_names,
        columns=sp.var_names,
    )
    counts.to_csv(root / "sp.csv")
    coords = pd.DataFrame(sp.obsm["spatial"][:, :2], index=sp.obs_names, columns=["x", "y"])
    coords.iloc[::-1].to_csv(root / "coords.csv")  # joined by name, not by order
    io.write(sp, root / "sp.h5ad")
    io.write(ref, root / "sc.h5ad")
    return root, sp


def test_inspect_coords_joins_by_name(files, capsys):
    root, _ = files
    assert main(["inspect", str(root / "sp.csv"), "--spatial"]) == 2
    assert "obsm['spatial']" in capsys.readouterr().err
    code = main(
        ["inspect", str(root / "sp.csv"), "--coords", str(root / "coords.csv"), "--spatial"]
    )
    assert code == 0
    assert "2-D" in capsys.readouterr().out


def test_map_coords_give_sp_its_coordinates(files, tmp_path):
    root, sp = files
    out = tmp_path / "mapped.h5ad"
    args = ["map", str(root / "sc.h5ad"), str(root / "sp.csv"), "-o", str(out)]
    assert main([*args, "--method", "fgw", "--genes", "none"]) == 2  # fgw needs coordinates
    code = main([*args, "--method", "fgw", "--genes", "none", "--coords", str(root / "coords.csv")])
    assert code == 0
    written = io.read(out)
    np.testing.assert_allclose(written.obsm["spatial"], sp.obsm["spatial"][:, :2])


def test_align_coords_a_and_b(files, tmp_path):
    root, sp = files
    out = tmp_path / "aligned.h5ad"
    csv, coords = str(root / "sp.csv"), str(root / "coords.csv")
    args = ["align", csv, csv, "-o", str(out), "--overlap", "none"]
    assert main([*args, "--coords-a", coords]) == 2  # B has none
    assert main([*args, "--coords-a", coords, "--coords-b", coords]) == 0
    aligned = io.read(out).obsm["spatial_aligned"]
    np.testing.assert_allclose(aligned, sp.obsm["spatial"][:, :2], atol=1e-6 * np.ptp(aligned))


def test_missing_coords_file_is_one_line(files, capsys):
    root, _ = files
    assert main(["inspect", str(root / "sp.csv"), "--coords", str(root / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.csv does not exist" in err and "\n" not in err


# ------------------------------------------------------------------- one-line warnings
def _normalized(adata, *, log: bool):
    import scanpy as sc

    out = adata.copy()
    out.X = out.X.astype(np.float32)
    sc.pp.normalize_total(out, target_sum=1e4)
    if log:
        sc.pp.log1p(out)
    return out


def test_normalized_problem_sees_normalize_total_only():
    from cellweave.validate import normalized_problem

    sp, _ = simulate_spatial(n_spots=40, n_genes=40, n_ref_cells=60, random_state=0)
    assert normalized_problem(sp.X) is None  # counts
    assert "sum to 1e+04" in normalized_problem(_normalized(sp, log=False).X)
    assert normalized_problem(_normalized(sp, log=True).X) is None  # logged: the other check


def test_impute_auto_without_coordinates_warns(files, monkeypatch):
    import cellweave as cw
    from cellweave.errors import CellweaveWarning
    from cellweave.impute import api as impute_api

    _, sp = files
    monkeypatch.setattr(
        impute_api, "_predict", lambda spec, a, *rest: (np.full(a.shape, 1.0 / a.n_vars), None)
    )
    with pytest.warns(CellweaveWarning, match="no spatial loss"):
        cw.tl.impute(sp.copy(), spatial_key=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CellweaveWarning)
        cw.tl.impute(sp.copy())  # with coordinates: nothing to say


def test_cli_prints_the_warning_as_one_line(files, tmp_path, capsys, monkeypatch):
    from cellweave.impute import api as impute_api

    root, _ = files
    monkeypatch.setattr(
        impute_api, "_predict", lambda spec, a, *rest: (np.full(a.shape, 1.0 / a.n_vars), None)
    )
    out = tmp_path / "imputed.h5ad"
    code = main(["impute", str(root / "sp.h5ad"), "-o", str(out), "--spatial-key", "none"])
    assert code == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(lines) == 1
    assert lines[0].startswith("cellweave: warning: method 'auto' runs without coordinates")


def test_map_warns_about_normalized_spatial_data(files, tmp_path, capsys):
    import cellweave as cw
    from cellweave.errors import CellweaveWarning, NotCountsError

    root, sp = files
    ref = io.read(root / "sc.h5ad")
    with pytest.warns(CellweaveWarning, match=r"adata_sp.X looks depth-normalized"):
        cw.tl.map_cells(ref, _normalized(sp, log=False), method="softmax")
    logged = _normalized(sp, log=True)
    with pytest.raises(NotCountsError, match="log-transformed"):  # log1p again: refused
        cw.tl.map_cells(ref, logged, method="softmax")
    with pytest.warns(CellweaveWarning, match="normalize='total' takes its values as linear"):
        cw.tl.map_cells(ref, logged, method="softmax", normalize="total")
    io.write(_normalized(sp, log=False), tmp_path / "norm.h5ad")
    code = main(
        ["map", str(root / "sc.h5ad"), str(tmp_path / "norm.h5ad"), "-o", str(tmp_path / "o.h5ad")]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "cellweave: warning: adata_sp.X looks depth-normalized" in err
