"""Maps of a mapping's outputs (``cw.pl.fractions``, ``predicted_genes``, ``view_weights``,
``fractions_vs_truth``, ``mapping_plots``) and ``cellweave map --plot``: rendered, then
checked for the invariants users compare by (one colour scale where panels are compared,
human titles, the y axis down as in ``sc.pl.spatial``, spot size from the spacing)."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

import cellweave as cw
from cellweave.cli import main
from cellweave.cli import map as map_cli
from cellweave.errors import MissingKeyError
from cellweave.plotting.mapping import truth_scores
from cellweave.plotting.spatial import spot_size
from cellweave.sim import simulate_spatial

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mapped():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp_, ref = simulate_spatial(n_spots=100, n_genes=40, n_ref_cells=120, random_state=1)
    panel = sp_[:, 5:].copy()
    # a solver without view weights (the fractions default, attention, has them)
    mapping = cw.tl.map_cells(ref, panel, method="gradient", cell_type_key="cell_type")
    cw.tl.project_genes(mapping, ref, adata_sp=panel, genes=list(ref.var_names[:6]))
    return panel


def _maps(fig) -> list:
    """The spatial map axes of ``fig`` (those holding coloured spots), in drawing order."""
    return [
        ax
        for ax in fig.axes
        if any(isinstance(c, PathCollection) and c.get_array() is not None for c in ax.collections)
    ]


def _norm(ax) -> tuple[float, float]:
    coloured = [c for c in ax.collections if c.get_array() is not None]
    norms = {(c.norm.vmin, c.norm.vmax) for c in coloured}
    assert len(norms) == 1
    return norms.pop()


def _colorbars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _assert_png(path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = plt.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_fractions_share_one_scale_and_one_colorbar(mapped, tmp_path):
    table = mapped.obsm["cell_type_fractions"]
    fig = cw.pl.fractions(mapped, save=tmp_path / "f.png")
    maps = _maps(fig)
    assert len(maps) == table.shape[1]
    expected = (0.0, float(table.to_numpy().max()))
    for ax in maps:
        np.testing.assert_allclose(_norm(ax), expected)
        assert ax.yaxis_inverted()  # rows grow downwards, as sc.pl.spatial
    assert [ax.get_title() for ax in maps] == list(table.columns)  # the type, not the key
    assert not any(":" in ax.get_title() for ax in maps)
    assert len(_colorbars(fig)) == 1
    _assert_png(tmp_path / "f.png")


def test_predicted_genes_have_one_scale_each(mapped):
    table = mapped.obsm["predicted_genes"]
    genes = list(table.columns[:4])
    fig = cw.pl.predicted_genes(mapped, genes=genes)
    maps = _maps(fig)
    assert [ax.get_title() for ax in maps] == genes
    for ax, gene in zip(maps, genes, strict=True):
        np.testing.assert_allclose(_norm(ax), (table[gene].min(), table[gene].max()), rtol=1e-6)
    assert len({_norm(ax) for ax in maps}) > 1
    assert len(_colorbars(fig)) == len(genes)
    plt.close(fig)


def test_predicted_genes_default_to_the_most_variable(mapped):
    table = mapped.obsm["predicted_genes"]
    fig = cw.pl.predicted_genes(mapped, n_genes=2)
    spread = np.log1p(table).var().sort_values(ascending=False)
    assert [ax.get_title() for ax in _maps(fig)] == list(spread.index[:2])
    plt.close(fig)
    with pytest.raises(MissingKeyError, match=r"not in adata\.obsm"):
        cw.pl.predicted_genes(mapped, genes=["no_such_gene"])


def test_view_weights_share_the_unit_scale_with_human_titles(mapped):
    rng = np.random.default_rng(0)
    adata = mapped.copy()
    weights = rng.dirichlet([1.0, 1.0, 1.0], size=adata.n_obs)
    adata.obsm["view_weights"] = pd.DataFrame(
        weights, index=adata.obs_names, columns=["panel", "neighbours", "histology"]
    )
    fig = cw.pl.view_weights(adata)
    maps = _maps(fig)
    assert [ax.get_title() for ax in maps] == ["own panel", "neighbour rings", "histology"]
    assert {_norm(ax) for ax in maps} == {(0.0, 1.0)}
    assert len(_colorbars(fig)) == 1
    plt.close(fig)


def test_predicted_and_true_fractions_share_a_scale_per_type(mapped, tmp_path):
    predicted, truth = mapped.obsm["cell_type_fractions"], mapped.obsm["true_fractions"]
    fig = cw.pl.fractions_vs_truth(mapped, save=tmp_path / "t.png")
    maps = _maps(fig)
    types = list(predicted.columns)
    assert len(maps) == 2 * len(types)
    for i, cell_type in enumerate(types):
        pred_ax, true_ax = maps[2 * i], maps[2 * i + 1]
        assert pred_ax.get_title() == f"{cell_type}: predicted"
        assert true_ax.get_title() == f"{cell_type}: true"
        vmax = max(predicted[cell_type].max(), truth[cell_type].max())
        np.testing.assert_allclose(_norm(pred_ax), (0.0, vmax))
        np.testing.assert_allclose(_norm(true_ax), (0.0, vmax))
    p, t = predicted.to_numpy().ravel(), truth[types].to_numpy().ravel()
    rmse, r = np.sqrt(np.mean((p - t) ** 2)), np.corrcoef(p, t)[0, 1]
    assert truth_scores(predicted, truth[types]) == pytest.approx((rmse, r))
    scatter = [ax for ax in fig.axes if ax.get_title().startswith("predicted vs true")]
    assert len(scatter) == 1
    assert f"RMSE {rmse:.3f}" in scatter[0].get_title()
    assert f"Pearson r {r:.3f}" in scatter[0].get_title()
    _assert_png(tmp_path / "t.png")


def test_missing_outputs_are_one_line_errors(mapped):
    bare = mapped.copy()
    del bare.obsm["cell_type_fractions"]
    with pytest.raises(MissingKeyError, match=r"cell_type_key=\.\.\.\) first") as err:
        cw.pl.fractions(bare)
    assert "\n" not in str(err.value)
    with pytest.raises(MissingKeyError, match="method='attention'"):
        cw.pl.view_weights(bare)


def test_mapping_plots_writes_the_kinds_the_outputs_allow(mapped, tmp_path):
    written = cw.pl.mapping_plots(mapped, tmp_path / "plot.png")
    assert set(written) == {"fractions", "genes", "truth"}  # no view weights: not attention
    for kind, path in written.items():
        assert path == tmp_path / f"plot_{kind}.png"
        _assert_png(path)
    assert not (tmp_path / "plot_views.png").exists()


def test_spot_size_follows_the_spacing_not_the_units():
    x, y = np.meshgrid(np.arange(10.0), np.arange(10.0))
    grid = np.column_stack([x.ravel(), y.ravel()])
    fig, ax = plt.subplots(figsize=(4, 4))
    small = spot_size(ax, grid)
    assert spot_size(ax, grid * 100.0) == pytest.approx(small)  # microns or pixels alike
    x, y = np.meshgrid(np.arange(40.0), np.arange(40.0))
    denser = spot_size(ax, np.column_stack([x.ravel(), y.ravel()]))
    assert denser < small / 10  # 4x the spots per side: ~16x less area each
    plt.close(fig)


def test_pl_spatial_has_the_same_orientation(mapped):
    fig = cw.pl.spatial(
        mapped, color="cell_type_fractions:" + mapped.obsm["cell_type_fractions"].columns[0]
    )
    assert all(ax.yaxis_inverted() for ax in _maps(fig))
    plt.close(fig)


# ---------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("map_plot")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp_, ref = simulate_spatial(n_spots=80, n_genes=40, n_ref_cells=100, random_state=2)
    panel = sp_[:, 5:].copy()
    for adata in (panel, ref):
        adata.uns.pop("sim", None)
    panel.write_h5ad(root / "sp.h5ad")
    ref.write_h5ad(root / "sc.h5ad")
    return root


def test_cli_plot_writes_one_png_per_kind(files, tmp_path, capsys):
    out, plot = tmp_path / "out.h5ad", tmp_path / "maps.png"
    argv = [files / "sc.h5ad", files / "sp.h5ad", "-o", out, "--cell-type-key", "cell_type"]
    argv += ["--method", "gradient"]  # no view weights (attention's are plotted too)
    code = main(["map", *map(str, argv), "--plot", str(plot)])
    assert code == 0, capsys.readouterr().err
    for kind in ("fractions", "genes", "truth"):
        _assert_png(tmp_path / f"maps_{kind}.png")
    assert not (tmp_path / "maps_views.png").exists() and not plot.exists()


def _refuse(*args, **kwargs):
    raise AssertionError("an input was read before --plot was checked")


@pytest.mark.parametrize(
    ("plot", "extra", "words"),
    [
        ("maps.jpg", (), "must end in .png"),
        ("no_such_folder/maps.png", (), "does not exist"),
        ("taken.png", (), "already exists"),
        ("maps.png", ("--evaluate",), "--plot draws a mapping"),
    ],
)
def test_cli_bad_plot_paths_are_refused_before_reading(
    files, tmp_path, capsys, monkeypatch, plot, extra, words
):
    monkeypatch.setattr(map_cli, "read_input", _refuse)
    (tmp_path / "taken_fractions.png").write_bytes(b"an earlier figure")
    out = tmp_path / "out.h5ad"
    argv = [files / "sc.h5ad", files / "sp.h5ad", "-o", out, "--plot", tmp_path / plot]
    code = main(["map", *map(str, argv), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert not out.exists()


def test_cli_plot_needs_coordinates_before_mapping(files, tmp_path, capsys, monkeypatch):
    import anndata as ad

    from cellweave.mapping import methods as mapping_methods

    monkeypatch.setattr(mapping_methods, "_solve", _refuse)
    bare = ad.read_h5ad(files / "sp.h5ad")
    del bare.obsm["spatial"]
    bare.write_h5ad(tmp_path / "bare.h5ad")
    argv = [files / "sc.h5ad", tmp_path / "bare.h5ad", "-o", tmp_path / "o.h5ad"]
    code = main(["map", *map(str, argv), "--plot", str(tmp_path / "m.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "spatial" in err, err


def test_truth_of_chosen_types_only(mapped):
    first = str(mapped.obsm["cell_type_fractions"].columns[0])
    fig = cw.pl.fractions_vs_truth(mapped, types=[first])
    assert [ax.get_title() for ax in _maps(fig)] == [f"{first}: predicted", f"{first}: true"]
    plt.close(fig)
    with pytest.raises(MissingKeyError, match="'no_type'"):
        cw.pl.fractions_vs_truth(mapped, types=["no_type"])
    with pytest.raises(TypeError, match="spatial_kye"):
        cw.pl.predicted_genes(mapped, spatial_kye="spatial")
