"""Histology images in uns['spatial']: the simulator's renderer, per-spot colour features,
and image-gated smoothing in the imputation API."""

from __future__ import annotations

import numpy as np
import pytest
from anndata import AnnData
from scipy import sparse

import cellweave as cw
from cellweave.errors import InputError, MissingKeyError
from cellweave.image import get_image, has_image, spot_image_features
from cellweave.impute.registry import METHODS
from cellweave.impute.similarity import gate_by_similarity, similarity_weights
from cellweave.impute.spatial_loss import ring_orders
from cellweave.metrics.denoising import molecular_split


@pytest.fixture(scope="module")
def tissue():
    spatial, _ = cw.sim.simulate_spatial(
        n_spots=400, n_genes=40, n_domains=4, n_ref_cells=10, dropout=0.0, random_state=0
    )
    cw.sim.render_histology(spatial, random_state=0)
    return spatial


def _edges(adata):
    order = ring_orders(adata.obsm["spatial"], max_order=1, n_neighbors=6, method="auto")
    coo = sparse.triu(order, k=1).tocoo()
    dom = adata.obs["domain"].astype(str).to_numpy()
    return order, coo.row, coo.col, dom[coo.row] == dom[coo.col]


def test_render_histology_layout(tissue):
    assert has_image(tissue)
    image = get_image(tissue)
    assert image.library_id == "sim" and image.img_key == "hires" and image.scale == 8.0
    H, W, C = image.pixels.shape
    assert C == 3 and 0 <= image.pixels.min() and image.pixels.max() <= 1
    coords = tissue.obsm["spatial"]
    assert W >= coords[:, 0].max() * 8 and H >= coords[:, 1].max() * 8


def test_spot_colours_separate_domains(tissue):
    F = spot_image_features(tissue, standardize=False)[:, :3]  # mean colour
    _, a, b, same = _edges(tissue)
    dist = np.linalg.norm(F[a] - F[b], axis=1)
    assert np.median(dist[~same]) > 3 * np.median(dist[same])


def test_features_on_a_hand_made_image():
    img = np.zeros((20, 20, 3))
    img[:, 10:] = [1.0, 0.5, 0.0]  # right half orange, left half black
    adata = AnnData(np.ones((2, 1)))
    adata.obsm["spatial"] = np.array([[2.0, 5.0], [15.0, 5.0]])  # full-res = image pixels
    adata.uns["spatial"] = {
        "lib": {"images": {"lowres": img}, "scalefactors": {"tissue_lowres_scalef": 1.0}}
    }
    F = spot_image_features(adata, radius=2, standardize=False)
    np.testing.assert_allclose(F[0], [0, 0, 0, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(F[1], [1.0, 0.5, 0.0, 0, 0, 0], atol=1e-12)
    half = spot_image_features(adata, radius=6, standardize=False)  # patch straddles x = 10
    assert 0 < half[1, 0] < 1 and half[1, 3] > 0


def test_missing_image_and_bad_layouts():
    adata = AnnData(np.ones((3, 2)))
    adata.obsm["spatial"] = np.zeros((3, 2))
    assert not has_image(adata)
    with pytest.raises(MissingKeyError, match="holds no image"):
        spot_image_features(adata)
    adata.uns["spatial"] = {"a": {"images": {"hires": np.zeros((4, 4, 3))}, "scalefactors": {}}}
    with pytest.raises(MissingKeyError, match="tissue_hires_scalef"):
        spot_image_features(adata)
    adata.uns["spatial"]["b"] = adata.uns["spatial"]["a"]
    with pytest.raises(MissingKeyError, match="several libraries"):
        get_image(adata)
    with pytest.raises(InputError, match="similarity_features='texture'"):
        cw.impute.predict_proportions(adata, method="rings", similarity_features="texture")


def test_relative_gating_keeps_each_spots_most_alike_neighbour():
    # a path 0 - 1 - 2 where spot 0 looks unlike everything (e.g. tissue edge)
    graph = sparse.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=float))
    features = np.array([[10.0], [0.0], [0.1]])
    absolute = similarity_weights(graph, features).toarray()
    relative = similarity_weights(graph, features, relative=True).toarray()
    assert absolute[0, 1] < 0.05  # all but cut off from its only neighbour
    assert relative[0, 1] == pytest.approx(1.0)  # kept: it is the most alike
    assert relative[1, 2] == pytest.approx(1.0) and relative[1, 0] < 0.05


def test_image_gating_cuts_cross_domain_edges(tissue):
    order, a, b, same = _edges(tissue)
    W = sparse.csr_matrix(order, dtype=float)
    F = spot_image_features(tissue)
    gated = gate_by_similarity(W, None, metric="gaussian", features=F).toarray()
    kept = gated[a, b]
    assert kept[~same].mean() < 0.25 * kept[same].mean()


def test_image_gated_smoothing_keeps_a_sharp_boundary():
    """Two halves with unrelated expression: smoothing across the boundary mixes them, the
    image-gated smoother (the image shows the boundary) keeps each side's profile."""
    rng = np.random.default_rng(0)
    xx, yy = np.meshgrid(np.arange(24.0), np.arange(12.0))
    coords = np.c_[xx.ravel(), yy.ravel()]
    left = coords[:, 0] < 12
    profiles = rng.dirichlet(np.full(30, 0.3), size=2)
    truth = np.where(left[:, None], profiles[0], profiles[1])
    X = sparse.csr_matrix(rng.poisson(40 * truth).astype(float))
    adata = AnnData(X)
    adata.obsm["spatial"] = coords
    adata.obs["domain"] = np.where(left, "a", "b")
    cw.sim.render_histology(adata, random_state=1, spot_diameter=0.8)
    boundary = np.abs(coords[:, 0] - 11.5) < 1

    def boundary_error(**kw):
        P = cw.impute.predict_proportions(adata, method="rings", **kw)
        return float(np.abs(P[boundary] - truth[boundary]).sum(axis=1).mean())  # L1

    plain = boundary_error()
    gated = boundary_error(similarity_features="image")
    assert gated < 0.8 * plain


def test_tl_impute_records_image_similarity(tissue):
    adata = tissue.copy()
    adata.X = sparse.csr_matrix(molecular_split(sparse.csr_matrix(adata.X), random_state=0)[0])
    cw.tl.impute(adata, method="rings", similarity_features="image")
    params = adata.uns["impute"]["params"]
    assert params["similarity_features"] == "image" and params["similarity"] == "gaussian"
    assert "rings" in METHODS
