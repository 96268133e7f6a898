"""What the commands read: ``--coords`` wherever coordinates are read, ``--gene-case`` of
``map``, and the one-line warnings of ``impute`` (no coordinates) and ``map`` (normalized
input)."""

from __future__ import annotations

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
