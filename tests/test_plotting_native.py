"""Plots a scanpy user reads: rendered to PNG and checked for what they must show (image
under the spots in scanpy's orientation, shared colour scales, stable colours, graph edges,
sorted bars with error bars), not only that a file exists."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from scipy import sparse

import cellweave as cw
from cellweave.cli._common import use_agg_backend
from cellweave.plotting import (
    category_hex,
    embedding,
    human_title,
    informative_gene,
    metric_bars,
    obs_palette,
    spatial,
    spatial_graph,
)
from pixels import pixel_at, rendered_png

use_agg_backend()


def _grid(n: int = 6, step: float = 100.0) -> np.ndarray:
    x, y = np.meshgrid(np.arange(n) * step + step, np.arange(n) * step + step)
    return np.column_stack([x.ravel(), y.ravel()])


def _visium_like() -> ad.AnnData:
    """Spots in full-resolution pixels on an image whose top half is red and bottom half
    blue, with scanpy's ``uns["spatial"]`` layout (hires at half resolution)."""
    coords = _grid()
    image = np.zeros((400, 400, 3))
    image[:200] = (1.0, 0.0, 0.0)  # rows 0-199 (y < 400 full-res): red
    image[200:] = (0.0, 0.0, 1.0)
    obs = pd.DataFrame(
        {"half": np.where(coords[:, 1] < 400, "top", "bottom")},
        index=[f"s{i}" for i in range(len(coords))],
    )
    adata = ad.AnnData(np.zeros((len(coords), 1)), obs=obs, obsm={"spatial": coords})
    adata.uns["spatial"] = {
        "lib": {
            "images": {"hires": image},
            "scalefactors": {"tissue_hires_scalef": 0.5, "spot_diameter_fullres": 40.0},
        }
    }
    return adata


def test_spatial_draws_spots_over_the_image_in_scanpy_orientation():
    adata = _visium_like()
    fig = spatial(adata, color="half")
    ax = fig.axes[0]
    png = rendered_png(fig)
    palette = obs_palette(adata, "half")
    assert adata.uns["half_colors"] == [palette["bottom"], palette["top"]]  # stored, scanpy way
    # image pixels = full-res coordinates x 0.5; the top rows of the image are red, drawn on top
    assert np.allclose(pixel_at(png, ax, (125, 75)), (1, 0, 0), atol=0.05)  # between spots
    assert np.allclose(pixel_at(png, ax, (125, 275)), (0, 0, 1), atol=0.05)
    assert ax.yaxis_inverted()
    for xy, half in (((100.0, 100.0), "top"), ((100.0, 600.0), "bottom")):
        centre = pixel_at(png, ax, (xy[0] * 0.5, xy[1] * 0.5))
        assert np.allclose(centre, to_rgb(palette[half]), atol=0.05)
    # spots are spot_diameter_fullres wide (40 px full-res = 20 image px): 8 px from the
    # centre is spot, 14 px is image
    assert np.allclose(pixel_at(png, ax, (50 + 8, 50)), to_rgb(palette["top"]), atol=0.05)
    assert np.allclose(pixel_at(png, ax, (50 + 14, 50)), (1, 0, 0), atol=0.05)
    plt.close(fig)
    no_image = spatial(adata, color="half", img_key=None)
    assert not no_image.axes[0].images
    plt.close(no_image)


def test_spatial_without_image_has_y_down():
    coords = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 0.0], [10.0, 10.0]])
    adata = ad.AnnData(np.zeros((4, 1)), obsm={"spatial": coords})
    adata.obs["v"] = [1.0, 0.0, 1.0, 0.0]  # y = 0: high values
    fig = spatial(adata, color="v", size=400)
    ax = fig.axes[0]
    png = rendered_png(fig)
    top = pixel_at(png, ax, (0.0, 0.0))
    bottom = pixel_at(png, ax, (0.0, 10.0))
    _, top_row = ax.transData.transform((0.0, 0.0))
    _, bottom_row = ax.transData.transform((0.0, 10.0))
    assert top_row > bottom_row  # y = 0 is higher up on the page, as in sc.pl.spatial
    assert not np.allclose(top, bottom)
    plt.close(fig)


def test_compared_panels_share_one_colour_scale():
    coords = _grid(4)
    adata = ad.AnnData(np.zeros((16, 1)), obsm={"spatial": coords})
    common = 5  # the same value in both panels at this spot
    observed, imputed = np.linspace(0, 1, 16), np.linspace(0, 2, 16)
    observed[common] = imputed[common] = 0.5
    adata.obs["observed"], adata.obs["imputed"] = observed, imputed
    shared = spatial(adata, color=["observed", "imputed"], share_scale=True, size=300)
    clims = [c.get_clim() for ax in shared.axes[:2] for c in ax.collections[:1]]
    assert clims[0] == clims[1] == (0.0, 2.0)
    png = rendered_png(shared)
    point = tuple(coords[common])
    assert np.allclose(pixel_at(png, shared.axes[0], point), pixel_at(png, shared.axes[1], point))
    plt.close(shared)
    separate = spatial(adata, color=["observed", "imputed"], size=300)
    png = rendered_png(separate)
    a, b = (pixel_at(png, ax, point) for ax in separate.axes[:2])
    assert not np.allclose(a, b)  # each panel on its own scale: the same value differs
    plt.close(separate)


def test_titles_are_readable():
    assert human_title("cell_type_fractions:CA1") == "fraction of CA1"
    assert human_title("true_fractions:type_0") == "true fraction of type_0"
    assert human_title("gradient_fractions:Astro") == "fraction of Astro (gradient)"
    assert human_title("Gfap", layer="imputed") == "Gfap (imputed)"
    assert human_title("n_neighbors", obs=True) == "n neighbors"
    adata = ad.AnnData(np.zeros((4, 1)), obsm={"spatial": _grid(2)})
    adata.obsm["cell_type_fractions"] = pd.DataFrame(
        {"CA1": [0.1, 0.2, 0.3, 0.4]}, index=adata.obs_names
    )
    fig = spatial(adata, color="cell_type_fractions:CA1")
    assert fig.axes[0].get_title() == "fraction of CA1"
    plt.close(fig)
    adata.layers["imputed"] = adata.X + 1.0
    fig = spatial(adata, color=["0", "0"], layer=[None, "imputed"], share_scale=True)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["0", "0 (imputed)"]
    plt.close(fig)


def _closest(colours) -> float:
    rgb = np.array([to_rgb(c) for c in colours])
    distance = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    return float(distance.min())


def test_twenty_labels_get_distinct_colours_as_scanpy():
    fifteen = category_hex([f"c{i}" for i in range(15)])
    # scanpy's order: ten saturated colours first, their light partners after, so the first
    # ten of 15 labels are far apart (tab20 alternates dark and light: 0.15 apart)
    assert _closest(fifteen[:10]) > 0.25
    assert _closest(category_hex([f"c{i}" for i in range(20)])) > 0.09
    assert category_hex(["a", "b"])[:2] == ["#1f77b4", "#ff7f0e"]  # scanpy's default_20
    assert len(set(category_hex([f"c{i}" for i in range(60)]))) == 60  # 102 palette


def _legend(ax) -> dict[str, tuple]:
    legend = ax.get_legend()
    return {
        t.get_text(): tuple(np.round(h.get_facecolor()[0][:3], 4))
        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }


def test_a_category_keeps_its_colour_across_figures():
    # the demo's PCA shows one modality (batch b2 lacks it), its UMAP every cell
    mdata_obs = ad.AnnData(np.zeros((6, 1)))
    mdata_obs.obs["batch"] = pd.Categorical(["b1", "b2", "b3"] * 2)
    palette = {"batch": obs_palette(mdata_obs, "batch")}
    assert mdata_obs.uns["batch_colors"] == category_hex(["b1", "b2", "b3"])
    coords = np.random.default_rng(0).normal(size=(6, 2))
    pca = embedding(coords[[0, 2, 3, 5]], color={"batch": ["b1", "b3"] * 2}, palette=palette)
    umap = embedding(coords, color={"batch": ["b1", "b2", "b3"] * 2}, palette=palette)
    first, second = _legend(pca.axes[0]), _legend(umap.axes[0])
    assert first["b3"] == second["b3"] and first["b1"] == second["b1"]
    unstable = embedding(coords[[0, 2, 3, 5]], color={"batch": ["b1", "b3"] * 2})
    assert _legend(unstable.axes[0])["b3"] != second["b3"]  # what the palette fixes
    spatial_ad = ad.AnnData(np.zeros((6, 1)), obs=mdata_obs.obs.copy(), uns=dict(mdata_obs.uns))
    spatial_ad.obsm["spatial"] = coords
    on_tissue = spatial(spatial_ad, color="batch")
    assert _legend(on_tissue.axes[0])["b2"] == second["b2"]
    plt.close("all")


def test_neighbour_graph_draws_its_edges():
    adata = ad.AnnData(np.zeros((36, 1)), obsm={"spatial": _grid(6, 1.0)})
    cw.graph.spatial_neighbors(adata, method="grid", max_order=2)
    fig = spatial_graph(adata)
    ax = fig.axes[0]
    (lines,) = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
    graph = sparse.csr_matrix(adata.obsp["spatial_connectivities"])
    assert len(lines.get_segments()) == (graph + graph.T).nnz // 2 > 0
    png = rendered_png(fig)
    edge = pixel_at(png, ax, (1.5, 1.0))  # midway between two order-1 neighbours
    assert np.allclose(edge, to_rgb("#404040"), atol=0.15)
    gap = pixel_at(png, ax, (1.5, 1.5))  # centre of a square: no order-1 edge, no spot
    assert not np.allclose(gap, to_rgb("#404040"), atol=0.15)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"order 1", "order 2"}
    plt.close(fig)


def test_metric_bars_sorted_with_seed_error_bars_relative_to_the_reference():
    per_seed = pd.DataFrame(
        {
            "method": ["raw", "a", "b", "c"] * 3,
            "deviance": [10.0, 1.2, 1.0, 1.1, 10.0, 1.4, 1.0, 1.1, 10.0, 1.0, 1.0, 1.1],
        }
    ).set_index("method")
    fig = metric_bars(per_seed, reference="raw")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    heights = [p.get_height() for p in ax.patches]
    assert labels == ["b", "c", "a"]  # sorted, best first; the reference is not a bar
    assert heights == pytest.approx([0.10, 0.11, 0.12])  # ratios to raw's 10
    (bars,) = [c for c in ax.containers if hasattr(c, "patches")]
    err = bars.errorbar.lines[2][0].get_segments()  # the error bar of each bar
    spread = [seg[1][1] - seg[0][1] for seg in err]
    assert spread[0] == pytest.approx(0.0) and spread[2] == pytest.approx(2 * 0.02)
    assert ax.get_ylim()[0] > 0.0  # zoomed on the ratios: the differences are visible
    plt.close(fig)


def test_default_gene_is_spatially_structured_not_haemoglobin():
    rng = np.random.default_rng(0)
    coords = _grid(10, 1.0)
    gradient = coords[:, 0] + 0.3 * rng.normal(size=100)
    values = np.column_stack(
        [
            rng.gamma(0.2, 50.0, 100),  # Hba-a1: the largest variance, no pattern
            5 + coords[:, 1],  # mt-Co1: structured but mitochondrial
            rng.normal(size=100),  # noise
            gradient,
        ]
    )
    adata = ad.AnnData(values, obsm={"spatial": coords})
    adata.var_names = ["Hba-a1", "mt-Co1", "Noise", "Gradient"]
    assert informative_gene(adata) == "Gradient"
    adata.var_names = ["HBB", "MT-CO1", "RPL13A", "HBEGF"]  # HBEGF is no haemoglobin
    assert informative_gene(adata) == "HBEGF"


def test_demo_pca_and_umap_colour_batches_alike(tmp_path, monkeypatch):
    import sys

    import cellweave.plotting as plotting
    from cellweave.cli import demo

    embedding_module = sys.modules["cellweave.plotting.embedding"]

    seen = []

    def record(coords, *, color, palette=None, **kwargs):
        seen.append({name: dict(palette or {}).get(name) for name in color})

    monkeypatch.setattr(plotting, "embedding", record)
    monkeypatch.setattr(embedding_module, "embedding", record)
    monkeypatch.setattr(embedding_module, "umap_coordinates", lambda x, **k: x[:, :2])
    ctx = demo.DemoContext(out=tmp_path, n_spots=100, n_cells=200, random_state=0)
    demo.section_mosaic_data(ctx)
    mdata = ctx.data["mosaic"]
    mdata.obsm["X_cellweave"] = np.random.default_rng(0).normal(size=(mdata.n_obs, 4))
    import cellweave.mosaic.api as mosaic_api

    monkeypatch.setattr(mosaic_api, "integrate", lambda *a, **k: None)
    demo.section_integration(ctx)
    pca, umap = seen
    assert pca["batch"] == umap["batch"] and pca["cell type"] == umap["cell type"]
    assert mdata.uns["batch_colors"] == list(pca["batch"].values())
