"""Maps of a mapping's outputs over the tissue image, as ``pl.spatial`` draws them: rendered
to PNG and checked by pixels (image between spots, value colours at spot centres, y down,
shared scales), and unchanged without an image."""

from __future__ import annotations

import warnings

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb

import cellweave as cw
from cellweave.cli._common import use_agg_backend
from pixels import pixel_at, rendered_png

use_agg_backend()

RED, BLUE, GREY = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), to_rgb("0.85")
SCALE = 0.5  # hires pixels per full-resolution pixel
TOP, BOTTOM = (100.0, 100.0), (100.0, 600.0)  # full-resolution spots on red / blue image


def _spot(png, ax, full_res) -> np.ndarray:
    """Colour at the centre of the spot at full-resolution ``full_res`` over the image."""
    return pixel_at(png, ax, (full_res[0] * SCALE, full_res[1] * SCALE))


def _colour(cmap: str, value: float) -> tuple:
    return colormaps[cmap](value)[:3]


def _table(adata, values: dict) -> pd.DataFrame:
    return pd.DataFrame(values, index=adata.obs_names)


@pytest.fixture
def section() -> ad.AnnData:
    """A 6 x 6 grid of spots (full-resolution pixels 100..600) on an image whose top half is
    red and bottom half blue (hires at half resolution, spots 40 full-res pixels wide), with
    fractions, predicted genes, view weights and true fractions that follow the halves."""
    x, y = np.meshgrid(np.arange(1, 7) * 100.0, np.arange(1, 7) * 100.0)
    coords = np.column_stack([x.ravel(), y.ravel()])
    image = np.zeros((400, 400, 3))
    image[:200] = RED
    image[200:] = BLUE
    adata = ad.AnnData(
        np.zeros((len(coords), 1)),
        obs=pd.DataFrame(index=[f"s{i}" for i in range(len(coords))]),
        obsm={"spatial": coords},
    )
    adata.uns["spatial"] = {
        "lib": {
            "images": {"hires": image},
            "scalefactors": {"tissue_hires_scalef": SCALE, "spot_diameter_fullres": 40.0},
        }
    }
    top = (coords[:, 1] < 400).astype(float)
    adata.obsm["cell_type_fractions"] = _table(adata, {"A": top, "B": 1 - top})
    adata.obsm["true_fractions"] = _table(adata, {"A": 0.5 * top, "B": 1 - top})
    row = coords[:, 1] / 100.0 - 1  # 0 (top) .. 5 (bottom)
    adata.obsm["predicted_genes"] = _table(adata, {"g1": row, "g2": 100.0 * row})
    adata.obsm["view_weights"] = _table(adata, {"panel": top, "neighbours": 1 - top})
    return adata


def test_fractions_draw_over_the_image_on_one_scale(section):
    fig = cw.pl.fractions(section)
    png = rendered_png(fig)
    a, b = (ax for ax in fig.axes if ax.get_title() in ("A", "B"))
    for ax in (a, b):
        assert len(ax.images) == 1 and ax.yaxis_inverted()
        assert np.allclose(pixel_at(png, ax, (125, 75)), RED, atol=0.05)  # between spots
        assert np.allclose(pixel_at(png, ax, (125, 275)), BLUE, atol=0.05)
    high, low = _colour("viridis", 1.0), _colour("viridis", 0.0)
    assert np.allclose(_spot(png, a, TOP), high, atol=0.05)  # y down: A = 1 in the top rows
    assert np.allclose(_spot(png, a, BOTTOM), low, atol=0.05)
    assert np.allclose(_spot(png, b, TOP), low, atol=0.05)
    assert np.allclose(_spot(png, b, BOTTOM), high, atol=0.05)  # the same scale in B
    # spots are spot_diameter_fullres wide (20 image px): 8 px off centre is spot, 14 is image
    assert np.allclose(pixel_at(png, a, (50 + 8, 50)), high, atol=0.05)
    assert np.allclose(pixel_at(png, a, (50 + 14, 50)), RED, atol=0.05)
    plt.close(fig)


def test_predicted_genes_and_view_weights_over_the_image(section):
    fig = cw.pl.predicted_genes(section, genes=["g1", "g2"])
    png = rendered_png(fig)
    for ax in (ax for ax in fig.axes if ax.get_title() in ("g1", "g2")):
        assert len(ax.images) == 1
        assert np.allclose(_spot(png, ax, TOP), _colour("viridis", 0.0), atol=0.05)
        assert np.allclose(_spot(png, ax, BOTTOM), _colour("viridis", 1.0), atol=0.05)
    plt.close(fig)
    fig = cw.pl.view_weights(section)
    png = rendered_png(fig)
    panel = next(ax for ax in fig.axes if ax.get_title() == "own panel")
    assert len(panel.images) == 1
    assert np.allclose(_spot(png, panel, TOP), _colour("magma", 1.0), atol=0.05)
    assert np.allclose(_spot(png, panel, BOTTOM), _colour("magma", 0.0), atol=0.05)
    plt.close(fig)


def test_truth_maps_over_the_image_share_a_scale_per_type(section):
    fig = cw.pl.fractions_vs_truth(section)
    png = rendered_png(fig)
    predicted = next(ax for ax in fig.axes if ax.get_title() == "A: predicted")
    true = next(ax for ax in fig.axes if ax.get_title() == "A: true")
    assert len(predicted.images) == 1 and len(true.images) == 1
    assert np.allclose(_spot(png, predicted, TOP), _colour("viridis", 1.0), atol=0.05)
    assert np.allclose(_spot(png, true, TOP), _colour("viridis", 0.5), atol=0.05)  # 0.5 of 1
    assert np.allclose(pixel_at(png, true, (125, 75)), RED, atol=0.05)
    plt.close(fig)


def test_missing_values_are_grey_over_the_image(section):
    fractions = section.obsm["cell_type_fractions"].copy()
    fractions.iloc[0] = np.nan  # the spot at (100, 100)
    section.obsm["cell_type_fractions"] = fractions
    fig = cw.pl.fractions(section)
    png = rendered_png(fig)
    a = next(ax for ax in fig.axes if ax.get_title() == "A")
    assert np.allclose(_spot(png, a, TOP), GREY, atol=0.05)
    assert np.allclose(_spot(png, a, (200.0, 100.0)), _colour("viridis", 1.0), atol=0.05)
    plt.close(fig)


def test_img_key_none_draws_as_before(section):
    fig = cw.pl.fractions(section, img_key=None)
    for ax in (ax for ax in fig.axes if ax.get_title() in ("A", "B")):
        assert not ax.images and ax.yaxis_inverted()
        assert any(isinstance(c, PathCollection) for c in ax.collections)  # markers
        low, high = ax.get_ylim()
        assert low > 600 > 100 > high  # fitted to the full-resolution coordinates
    plt.close(fig)


def test_mapping_plots_pass_the_image_choice(section, tmp_path):
    written = cw.pl.mapping_plots(section, tmp_path / "with.png")
    assert set(written) == {"fractions", "genes", "views", "truth"}
    bare = cw.pl.mapping_plots(section, tmp_path / "without.png", img_key=None)
    for kind in written:
        red = (plt.imread(written[kind])[:, :, :3] == RED).all(axis=2).mean()
        assert red > 0.01, kind  # the image shows between the spots
        assert (plt.imread(bare[kind])[:, :, :3] == RED).all(axis=2).mean() == 0.0, kind
    with pytest.raises(cw.errors.MissingKeyError, match="no 'lowres'"):
        cw.pl.fractions(section, img_key="lowres")
    with pytest.raises(cw.errors.MissingKeyError, match="no image"):
        cw.pl.fractions(section, library_id="other")


def test_space_ranger_section_maps_over_its_image(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulated, _ = cw.sim.simulate_spatial(
            n_spots=40, n_genes=40, n_ref_cells=40, random_state=0
        )
        simulated.uns.pop("sim", None)
        outs = cw.sim.write_spaceranger(simulated, tmp_path / "visium")
        section = cw.io.read_visium(outs)
    truth = simulated.obsm["true_fractions"]
    section.obsm["cell_type_fractions"] = pd.DataFrame(
        truth.to_numpy(), index=section.obs_names, columns=truth.columns
    )
    fig = cw.pl.fractions(section, title=None)
    png = rendered_png(fig)
    image = cw.image.get_image(section)
    coords = section.obsm["spatial"][:, :2] * image.scale
    vmax = float(truth.to_numpy().max())
    column = str(truth.columns[0])
    ax = next(ax for ax in fig.axes if ax.get_title() == column)
    assert len(ax.images) == 1 and ax.yaxis_inverted()
    for i in range(0, len(coords), 7):
        expected = _colour("viridis", float(truth.iloc[i, 0]) / vmax)
        assert np.allclose(pixel_at(png, ax, coords[i]), expected, atol=0.05)
    plt.close(fig)
