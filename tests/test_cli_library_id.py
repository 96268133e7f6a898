"""``--library-id`` for ``--plot`` of ``cellweave map`` / ``impute``: a section whose
``uns["spatial"]`` holds several images is refused up front (exit 2, one line, before any
mapping or imputation) unless a library is named, and a named one is drawn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cellweave as cw
from cellweave.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A simulated section with two libraries in ``uns["spatial"]`` (a red and a blue
    image), and its reference."""
    folder = tmp_path_factory.mktemp("library")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp, sc = cw.sim.simulate_spatial(n_spots=64, n_genes=60, random_state=0)
    scale = {"tissue_hires_scalef": 1.0, "spot_diameter_fullres": 0.8}
    span = int(np.ceil(sp.obsm["spatial"].max())) + 2
    red, blue = np.zeros((span, span, 3)), np.zeros((span, span, 3))
    red[..., 0], blue[..., 2] = 1.0, 1.0
    sp.uns["spatial"] = {
        "red": {"images": {"hires": red}, "scalefactors": dict(scale)},
        "blue": {"images": {"hires": blue}, "scalefactors": dict(scale)},
    }
    sp.write_h5ad(folder / "sp.h5ad")
    sc.write_h5ad(folder / "sc.h5ad")
    return folder


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _map(capsys, files, *extra, out: str = "o.h5ad"):
    args = ["map", files / "sc.h5ad", files / "sp.h5ad", "-o", files / out, "--overwrite"]
    return run(capsys, *args, "--method", "ot", "--cell-type-key", "cell_type", *extra)


def test_map_plot_needs_a_library_when_there_are_several(capsys, files):
    code, err = _map(capsys, files, "--plot", files / "m.png", out="refused.h5ad")
    assert code == 2, err
    assert "library_id" in err and "red" in err and len(err.strip().splitlines()) == 1
    assert not (files / "refused.h5ad").exists()  # refused before mapping


def test_map_plot_draws_the_named_library(capsys, files):
    from matplotlib.image import imread

    code, err = _map(capsys, files, "--plot", files / "m.png", "--library-id", "blue")
    assert code == 0, err
    png = imread(files / "m_fractions.png")[..., :3]
    blue = (png[..., 2] > 0.9) & (png[..., 0] < 0.1) & (png[..., 1] < 0.1)
    red = (png[..., 0] > 0.9) & (png[..., 1] < 0.1) & (png[..., 2] < 0.1)
    assert blue.sum() > 100 and red.sum() < blue.sum() / 10  # the blue image, not the red


def test_map_plot_unknown_library_is_one_line(capsys, files):
    code, err = _map(capsys, files, "--plot", files / "m.png", "--library-id", "green")
    assert code == 2 and "green" in err and len(err.strip().splitlines()) == 1


def test_impute_plot_needs_a_library_when_there_are_several(capsys, files):
    args = ["impute", files / "sp.h5ad", "-o", files / "i.h5ad", "--overwrite"]
    args += ["--method", "gene_mean", "--plot", files / "i.png"]
    code, err = run(capsys, *args)
    assert code == 2 and "library_id" in err
    assert not (files / "i.h5ad").exists()
    code, err = run(capsys, *args, "--library-id", "red")
    assert code == 0, err
    assert (files / "i.png").exists()
