"""Outputs ready to plot with scanpy: project_genes keeps the tissue image, the mosaic
latent is in every modality, probabilities are named DataFrames with colours in uns, and
mapped_probability says what it is."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from cellweave.mapping import cell_type_fractions, map_cells, project_genes
from cellweave.mosaic import integrate
from cellweave.plotting import category_hex
from cellweave.sim import simulate_mosaic, simulate_spatial

FAST = {"encoder_hidden": (32,), "n_embedding": 16, "decoder_hidden": (16,), "n_latent": 4}


def _visium_like():
    """Simulated spots with a tissue image and scale factors laid out as scanpy reads them."""
    sp, ref = simulate_spatial(n_spots=60, n_genes=40, n_ref_cells=100, random_state=4)
    del sp.uns["sim"], ref.uns["sim"]
    xy = sp.obsm["spatial"][:, :2]
    sp.obsm["spatial"] = (xy - xy.min(0)) * 20 + 100  # full-resolution pixels
    height, width = (np.ceil(sp.obsm["spatial"].max(0)[::-1] * 0.1) + 10).astype(int)
    image = np.ones((height, width, 3), dtype=np.float32) * 0.8
    sp.uns["spatial"] = {
        "lib": {
            "images": {"hires": image},
            "scalefactors": {"tissue_hires_scalef": 0.1, "spot_diameter_fullres": 15.0},
            "metadata": {},
        }
    }
    return sp, ref


def test_project_genes_keeps_the_tissue_and_plots_with_scanpy(tmp_path):
    import scanpy as sc

    sp, ref = _visium_like()
    mapping = map_cells(ref, sp, method="softmax")
    out = project_genes(mapping, ref, adata_sp=sp, genes=list(ref.var_names[:3]))
    assert out.uns["spatial"] is sp.uns["spatial"]
    np.testing.assert_array_equal(out.obsm["spatial"], sp.obsm["spatial"])
    axes = sc.pl.spatial(out, color=out.var_names[0], show=False)
    assert axes[0].images, "the H&E image is drawn under the spots"
    extent = axes[0].images[0].get_extent()  # scanpy draws in hires pixels
    assert extent[1] == pytest.approx(sp.uns["spatial"]["lib"]["images"]["hires"].shape[1], abs=1)
    axes[0].figure.savefig(tmp_path / "projected.png")
    # spatial data without an image: nothing invented
    del sp.uns["spatial"]
    bare = project_genes(mapping, ref, adata_sp=sp, genes=list(ref.var_names[:1]))
    assert "spatial" not in bare.uns


def test_mapped_probability_is_explained():
    sp, ref = _visium_like()
    mapping = map_cells(ref, sp, method="softmax")
    cell_type_fractions(mapping, ref, sp, cell_type_key="cell_type")
    share = ref.obs["mapped_probability"].to_numpy()
    plan = mapping.plan.toarray()
    np.testing.assert_allclose(share, plan.max(1) / plan.sum(1), rtol=1e-6)
    note = ref.uns["mapped_location"]["mapped_probability"]
    assert "share of the cell's mass at its top spot" in note and "not a confidence" in note


@pytest.fixture(scope="module")
def integrated():
    mdata = simulate_mosaic(
        n_cells=300,
        batches={"cite": ("rna", "protein"), "rna_only": ("rna",)},
        n_genes=40,
        n_proteins=8,
        n_cell_types=3,
        random_state=1,
    )
    rng = np.random.default_rng(0)
    keep = rng.random(mdata.n_obs) < 0.3
    mdata.obs["some_labels"] = mdata.obs["cell_type"].astype(str).where(keep, None).to_numpy()
    integrate(mdata, batch_key="batch", label_key="some_labels", max_epochs=2, **FAST)
    return mdata


def test_latent_in_each_modality(integrated):
    mdata = integrated
    latent = pd.DataFrame(mdata.obsm["X_cellweave"], index=mdata.obs_names)
    for name, adata in mdata.mod.items():
        assert adata.obsm["X_cellweave"].shape == (adata.n_obs, 4), name
        np.testing.assert_array_equal(
            adata.obsm["X_cellweave"], latent.loc[adata.obs_names].to_numpy()
        )


def test_probabilities_are_named_dataframes(integrated):
    mdata = integrated
    uns = mdata.uns["cellweave"]
    attention = mdata.obsm["cellweave_attention"]
    assert isinstance(attention, pd.DataFrame)
    assert list(attention.columns) == list(uns["modalities"])
    assert attention.index.equals(mdata.obs_names)
    probs = mdata.obsm["cellweave_label_probabilities"]
    assert list(probs.columns) == list(uns["label_classes"])
    np.testing.assert_allclose(probs.to_numpy().sum(1), 1, rtol=1e-5)
    clusters = mdata.obsm["cellweave_clusters"]
    assert list(clusters.columns) == [f"cluster_{k}" for k in range(clusters.shape[1])]
    best = probs.columns[probs.to_numpy().argmax(1)]
    assert (mdata.obs["cellweave_label"].astype(str).to_numpy() == best).all()


def test_label_colours_stable_and_read_by_scanpy(integrated, tmp_path):
    import scanpy as sc

    mdata = integrated
    labels = mdata.obs["cellweave_label"]
    colors = mdata.uns["cellweave_label_colors"]
    classes = list(mdata.uns["cellweave"]["label_classes"])
    palette = dict(zip(classes, category_hex(classes), strict=True))
    assert colors == [palette[c] for c in labels.cat.categories]
    assert len(set(colors)) == len(colors)
    rna = mdata["rna"].copy()
    rna.obs["label"] = labels.loc[rna.obs_names].astype(pd.CategoricalDtype(labels.cat.categories))
    rna.uns["label_colors"] = colors
    rna.obsm["X_emb"] = rna.obsm["X_cellweave"][:, :2]
    sc.pl.embedding(rna, basis="emb", color="label", show=False)
    assert rna.uns["label_colors"] == colors  # scanpy kept them (did not recolour)
    path = tmp_path / "integrated.h5mu"
    mdata.write(path)
    import mudata as md

    back = md.read_h5mu(path)
    assert list(back.obsm["cellweave_attention"].columns) == list(uns_modalities(mdata))
    assert "X_cellweave" in back["rna"].obsm


def uns_modalities(mdata) -> list[str]:
    return list(mdata.uns["cellweave"]["modalities"])
