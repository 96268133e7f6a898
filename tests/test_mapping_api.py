"""User API of the mapping: map_cells, predict_genes, project_genes, cell_type_fractions."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cellweave import io
from cellweave.errors import InputError, MissingKeyError, NoSharedFeaturesError
from cellweave.mapping import (
    Mapping,
    cell_type_fractions,
    map_cells,
    predict_genes,
    project_genes,
)
from cellweave.metrics.spatial import pcc, rmse
from cellweave.sim import simulate_spatial


@pytest.fixture(scope="module")
def pair():
    sp, ref = simulate_spatial(n_spots=250, n_genes=100, n_ref_cells=500, random_state=3)
    return sp, ref


def _dense(X):
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)


def test_map_cells_stores_a_sparse_plan_with_params(pair, tmp_path):
    sp, ref = pair[0].copy(), pair[1]
    mapping = map_cells(ref, sp, random_state=0)
    assert isinstance(mapping, Mapping) and mapping.method == "ot"  # the default
    assert mapping.plan.shape == (ref.n_obs, sp.n_obs)
    assert mapping.plan.nnz <= 50 * sp.n_obs  # 50 candidate cells per spot
    params = sp.uns["mapping"]["params"]
    assert params["n_candidates"] == 50 and params["features"]["n_pcs"] == 30
    # survives an h5ad round trip
    path = io.write(sp, tmp_path / "sp.h5ad")
    back = Mapping.from_adata(ad.read_h5ad(path))
    np.testing.assert_allclose(back.plan.toarray(), mapping.plan.toarray())
    assert list(back.genes) == list(mapping.genes) and back.method == "ot"
    assert back.params["unbalanced"] == 0.1


def test_balanced_ot_from_string_none_keeps_both_marginals(pair):
    sp, ref = pair[0].copy(), pair[1]
    mapping = map_cells(ref, sp, method="ot", unbalanced="None", epsilon=0.2)  # as the CLI
    assert sp.uns["mapping"]["params"]["unbalanced"] == "None"
    np.testing.assert_allclose(mapping.cell_mass, 1 / ref.n_obs, rtol=1e-4)
    np.testing.assert_allclose(mapping.spot_mass, 1 / sp.n_obs, rtol=1e-4)


def test_softmax_method_spot_marginals(pair):
    sp, ref = pair[0].copy(), pair[1]
    mapping = map_cells(ref, sp, method="softmax", perplexity=20)
    assert mapping.plan.nnz <= 80 * sp.n_obs  # 4 * perplexity candidates per spot
    assert sp.uns["mapping"]["params"]["perplexity"] == 20
    np.testing.assert_allclose(mapping.spot_mass, 1 / sp.n_obs)


@pytest.mark.parametrize("method", ["softmax", "ot"])
def test_predict_genes_recovers_held_out_genes(pair, method):
    sp, ref = pair
    rng = np.random.default_rng(0)
    held = list(rng.choice(sp.var_names, size=20, replace=False))
    train = [g for g in sp.var_names if g not in held]
    pred = predict_genes(ref, sp[:, train].copy(), held, method=method, scale="proportions")
    assert pred.shape == (sp.n_obs, 20) and np.isfinite(pred).all()
    # noise-free truth: the simulator's expected relative expression of each spot
    expected = _dense(sp[:, held].layers["true_expression"])
    expected /= _dense(sp[:, train].layers["true_expression"]).sum(1, keepdims=True)
    assert np.nanmedian(pcc(expected, pred)) > 0.5
    totals = _dense(sp[:, train].X).sum(1, keepdims=True)
    depth = totals * _dense(ref[:, held].X).mean(0)  # what depth alone predicts
    assert abs(np.nanmedian(pcc(expected, depth))) < 0.2
    # closer to the truth than the gene mean (RMSE of z-scores: 1 for any constant)
    gene_mean = np.tile(expected.mean(0), (sp.n_obs, 1))
    np.testing.assert_allclose(rmse(expected, gene_mean), 1.0)
    assert np.nanmedian(rmse(expected, pred)) < 0.95
    # counts scale = proportions times each spot's total over the mapped genes
    counts = predict_genes(ref, sp[:, train].copy(), held, method=method)
    np.testing.assert_allclose(counts, pred * totals, rtol=1e-6)


def test_predict_genes_ignores_held_out_columns_in_spatial_data(pair):
    sp, ref = pair
    held = list(sp.var_names[:5])
    without = predict_genes(ref, sp[:, sp.var_names[5:]].copy(), held)
    with_them = predict_genes(ref, sp, held)
    np.testing.assert_allclose(without, with_them)


def test_predict_genes_errors(pair):
    sp, ref = pair
    with pytest.raises(MissingKeyError, match="not in adata_sc"):
        predict_genes(ref, sp, ["nope"])
    with pytest.raises(NoSharedFeaturesError):
        predict_genes(ref, sp[:, :2].copy(), list(sp.var_names[:2]))


def test_project_genes_writes_obsm_and_returns_anndata(pair):
    sp, ref = pair[0].copy(), pair[1]
    mapping = map_cells(ref, sp, genes=list(sp.var_names[:70]))
    out = project_genes(sp, ref, genes=list(ref.var_names[60:]))
    assert out.shape == (sp.n_obs, 40) and "spatial" in out.obsm
    frame = sp.obsm["predicted_genes"]
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(ref.var_names[60:])
    np.testing.assert_allclose(frame.to_numpy(), out.X, rtol=1e-6)
    assert out.var["measured"].sum() == 10  # genes 60..69 were mapped on
    # the same through the Mapping object
    again = project_genes(mapping, ref, genes=list(ref.var_names[60:]), key_added=None)
    np.testing.assert_allclose(again.X, out.X)


def test_project_genes_rejects_another_reference(pair):
    sp, ref = pair[0].copy(), pair[1]
    map_cells(ref, sp)
    with pytest.raises(InputError, match="not the reference"):
        project_genes(sp, ref[:100].copy())
    with pytest.raises(MissingKeyError, match="map_cells"):
        project_genes(pair[0].copy(), ref)


def test_cell_type_fractions_and_locations(pair):
    sp, ref = pair[0].copy(), pair[1].copy()
    mapping = map_cells(ref, sp)
    fractions = cell_type_fractions(mapping, ref, sp, cell_type_key="cell_type")
    np.testing.assert_allclose(fractions.sum(1), 1.0)
    assert sp.obsm["cell_type_fractions"] is fractions
    assert set(fractions.columns) == set(ref.obs["cell_type"].cat.categories)
    assert ref.obs["mapped_spot"].isin(sp.obs_names).all()
    assert ref.obsm["spatial_mapped"].shape == (ref.n_obs, 2)
    # a cell's reported location is its spot's coordinates
    first = sp.obs_names.get_loc(ref.obs["mapped_spot"].iloc[0])
    np.testing.assert_allclose(ref.obsm["spatial_mapped"][0], sp.obsm["spatial"][first])


def test_missing_cell_type_key_raises_before_mapping(pair):
    sp, ref = pair[0].copy(), pair[1]
    with pytest.raises(MissingKeyError, match="obs\\['celltype'\\]"):
        map_cells(ref, sp, cell_type_key="celltype")
    assert "mapping" not in sp.uns


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "tangram"}, "unknown mapping method"),
        ({"method": "softmax", "epsilon": 0.1}, "no option"),
        ({"method": "ot", "epsilon": -1.0}, "epsilon"),
        ({"normalize": "zscore"}, "normalize must be"),
    ],
)
def test_bad_options_raise(pair, kwargs, match):
    sp, ref = pair[0].copy(), pair[1]
    with pytest.raises(InputError, match=match):
        map_cells(ref, sp, **kwargs)


def test_binarized_reference_and_intensities_work():
    """BDTNP-like data: binary reference, continuous intensities in space."""
    sp, ref = simulate_spatial(n_spots=200, n_genes=40, n_ref_cells=300, random_state=4)
    ref = ref.copy()
    X = _dense(ref.X)
    ref.X = (X > np.median(X, axis=0)).astype(np.float32)
    sp = sp.copy()
    sp.X = _dense(sp.X) / _dense(sp.X).max()
    pred = predict_genes(ref, sp[:, 10:].copy(), list(sp.var_names[:10]))
    assert np.isfinite(pred).all() and (pred >= 0).all()
    assert np.nanmedian(pcc(sp[:, :10].X, pred)) > 0.2


def test_learned_gene_weights_favour_genes_the_mapping_reproduces():
    from cellweave.mapping.features import learned_gene_weights

    rng = np.random.default_rng(0)
    observed = rng.random((200, 3))
    predicted = np.column_stack(
        [observed[:, 0], observed[:, 1] + rng.normal(0, 0.3, 200), rng.random(200)]
    )
    w = learned_gene_weights(predicted, observed)
    assert w.mean() == pytest.approx(1.0)
    assert w[0] > w[1] > w[2]
    with pytest.raises(InputError, match="temperature"):
        learned_gene_weights(predicted, observed, temperature=0)


def test_map_cells_with_learned_gene_weights_records_them(pair):
    sp, ref = pair
    mapping = map_cells(ref, sp.copy(), gene_weights="learned")
    weights = np.asarray(mapping.params["features"]["gene_weights"], dtype=float)
    assert weights.shape == (len(mapping.genes),) and weights.std() > 0
    with pytest.raises(InputError, match="gene_weights='learnt'"):
        map_cells(ref, sp.copy(), gene_weights="learnt")
