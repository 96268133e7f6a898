"""Embedding plots: the UMAP of a latent space, also past scanpy's approximate-kNN size."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from cellweave.cli._common import use_agg_backend
from cellweave.plotting._colors import shared_palettes
from cellweave.plotting.embedding import embedding, umap_coordinates


def test_umap_of_more_than_8192_cells_keeps_the_groups_apart(tmp_path):
    # scanpy 1.11 switches to pynndescent from 8,192 cells; its sparse-array output broke
    # sc.pp.neighbors with scipy >= 1.15 (`cellweave integrate` of the 10k-cell MOp data).
    # umap_coordinates keeps the approximate search there (exact kNN is quadratic) and hands
    # scanpy a scipy matrix: this size goes through that path
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(3), 2800)
    centres = rng.normal(scale=6.0, size=(3, 8))
    latent = (centres[groups] + rng.normal(size=(groups.size, 8))).astype(np.float32)
    coords = umap_coordinates(latent, random_state=0)
    assert coords.shape == (groups.size, 2) and np.isfinite(coords).all()
    # each cell's nearest neighbours in the 2-D map are of its own group
    knn = KNeighborsClassifier(n_neighbors=5).fit(coords[::2], groups[::2])
    assert (knn.predict(coords[1::2]) == groups[1::2]).mean() > 0.99
    use_agg_backend()
    png = tmp_path / "umap.png"
    embedding(coords, color={"group": groups.astype(str)}, title="groups", save=png)
    assert png.stat().st_size > 1000


def test_approximate_knn_matches_exact_neighbours():
    from sklearn.neighbors import NearestNeighbors

    from cellweave.plotting.embedding import _approximate_knn

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 6)).astype(np.float32)
    graph = _approximate_knn(len(x), 15, 0).fit_transform(x)
    assert type(graph).__name__ == "csr_matrix"  # what scanpy 1.11 can read
    _, exact = NearestNeighbors(n_neighbors=16).fit(x).kneighbors(x)
    found = np.split(graph.indices, graph.indptr[1:-1])
    recall = np.mean([len(set(f) & set(e)) / 16 for f, e in zip(found, exact, strict=True)])
    assert recall > 0.9


def test_true_and_predicted_labels_share_colours():
    # the predicted panel lacks a class (never predicted): its colours must not shift
    palettes = shared_palettes(
        {
            "batch": ["b1", "b2"],
            "label": ["A", "B", "C", "D"],
            "predicted": ["A", "C", "D"],
        }
    )
    assert all(palettes["label"][c] == palettes["predicted"][c] for c in "ACD")
    assert len({palettes["label"][c] for c in "ABCD"}) == 4
    assert set(palettes["batch"]) == {"b1", "b2"}
    assert palettes["batch"]["b1"] != palettes["batch"]["b2"]


def test_spatial_panels_of_true_and_predicted_types_share_colours():
    import anndata as ad
    import matplotlib.pyplot as plt
    import pandas as pd

    from cellweave.plotting.spatial import spatial

    use_agg_backend()
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {"cell_type": list("ABCD") * 5, "predicted": list("ACDD") * 5},
        index=[f"s{i}" for i in range(20)],
    )
    adata = ad.AnnData(np.zeros((20, 1)), obs=obs, obsm={"spatial": rng.normal(size=(20, 2))})
    fig = spatial(adata, color=["cell_type", "predicted"])

    def legend_colours(ax):
        return {
            t.get_text(): tuple(h.get_facecolor()[0])
            for t, h in zip(
                ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True
            )
        }

    truth, predicted = (legend_colours(ax) for ax in fig.axes[:2])
    assert set(predicted) == {"A", "C", "D"}
    assert all(truth[c] == predicted[c] for c in predicted)
    plt.close(fig)
