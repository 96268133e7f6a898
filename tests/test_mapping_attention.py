"""The multi-view attention mapper (``map_cells(method="attention")``, ``AttentionMapper``)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from cellweave import tl
from cellweave.errors import (
    EmptyDataError,
    InputError,
    InvalidOptionError,
    MissingKeyError,
    NonFiniteError,
    NoSharedFeaturesError,
    NotCountsError,
)
from cellweave.mapping.attention import AttentionMapper
from cellweave.metrics import fraction_scores
from cellweave.sim import render_histology, simulate_spatial

FAST = dict(max_epochs=30, device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    sp, sc = simulate_spatial(n_spots=200, n_genes=60, n_ref_cells=300, random_state=0)
    return sp, sc


@pytest.fixture(scope="module")
def trained(data):
    sp, sc = data
    model = AttentionMapper(sc, sp, cell_type_key="cell_type")
    return model.train(**FAST)


def _scores(sp, fractions):
    truth = sp.obsm["true_fractions"]
    return fraction_scores(truth, fractions[truth.columns])


def test_fusion_block_lives_in_core_nn():
    from cellweave import nn
    from cellweave.mosaic import modules

    assert modules.GatedAttentionFusion is nn.GatedAttentionFusion
    fusion = nn.GatedAttentionFusion(4)
    e = torch.randn(3, 2, 4)
    mask = torch.tensor([[True, False], [True, True], [False, True]])
    fused, weights = fusion(e, mask)
    assert weights[0, 1] == 0 and weights[2, 0] == 0
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    torch.testing.assert_close(fused[0], e[0, 0])


def test_map_cells_writes_the_agreed_outputs(data):
    sp, sc = data
    sp, sc = sp.copy(), sc.copy()
    mapping = tl.map_cells(sc, sp, method="attention", cell_type_key="cell_type", **FAST)
    assert mapping.method == "attention" and sp.uns["mapping"]["method"] == "attention"
    fractions = sp.obsm["cell_type_fractions"]
    np.testing.assert_allclose(fractions.sum(1), 1.0, atol=1e-5)
    weights = sp.obsm["view_weights"]
    assert list(weights.columns) == ["panel", "neighbours"]
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    assert (weights.to_numpy() > 0).all()
    assert sp.obsm["X_cellweave"].shape == (sp.n_obs, 32)
    assert sc.obsm["X_cellweave"].shape == (sc.n_obs, 32)
    # every spot's plan column sums to 1 (cell-number fractions) over its candidate cells
    np.testing.assert_allclose(mapping.spot_mass, 1.0, atol=1e-5)
    assert mapping.plan.getnnz(axis=0).max() <= 50 + 6
    predicted = tl.project_genes(mapping, sc, adata_sp=sp, genes=list(sc.var_names[:5]))
    assert predicted.shape == (sp.n_obs, 5) and np.isfinite(predicted.X).all()
    # key_added names the fractions and the view weights
    tl.map_cells(sc, sp, method="attention", cell_type_key="cell_type", key_added="att", **FAST)
    assert "att_fractions" in sp.obsm and "att_view_weights" in sp.obsm


@pytest.mark.slow
def test_fractions_beat_ot_and_match_gradient():
    sp, sc = simulate_spatial(n_spots=400, n_genes=150, random_state=1)
    scores = {}
    for method, params in (("ot", {}), ("gradient", {}), ("attention", {})):
        target = sp.copy()
        tl.map_cells(sc, target, method=method, cell_type_key="cell_type", device="cpu", **params)
        scores[method] = _scores(sp, target.obsm["cell_type_fractions"])
    att, ot, grad = scores["attention"], scores["ot"], scores["gradient"]
    assert att["rmse"] < ot["rmse"] and att["pcc_mean"] > ot["pcc_mean"]
    assert att["rmse"] < grad["rmse"] and att["pcc_mean"] > grad["pcc_mean"] - 0.03


def test_neighbour_view_absent_without_coordinates(data, trained):
    sp, sc = data
    model = AttentionMapper(sc, sp, cell_type_key="cell_type", spatial_key=None)
    weights = model.train(max_epochs=5, device="cpu").view_weights()
    assert list(weights.columns) == ["panel"]
    np.testing.assert_allclose(weights.to_numpy(), 1.0)
    assert list(trained.view_weights().columns) == ["panel", "neighbours"]


def test_histology_and_modality_views_get_weight_and_change_the_result(data, trained):
    sp, sc = data
    sp = sp.copy()
    render_histology(sp, random_state=0)
    rng = np.random.default_rng(0)
    truth = sp.obsm["true_fractions"].to_numpy()
    sp.obsm["protein"] = rng.poisson(50 * truth @ rng.uniform(0, 1, (truth.shape[1], 8)))
    model = AttentionMapper(sc, sp, cell_type_key="cell_type", modality_key="protein")
    model.train(**FAST)
    weights = model.view_weights()
    assert list(weights.columns) == ["panel", "neighbours", "histology", "modality"]
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    assert (weights[["histology", "modality"]].to_numpy() > 0.01).all()
    base = trained.map().cell_type_fractions(sc.obs["cell_type"])
    multi = model.map().cell_type_fractions(sc.obs["cell_type"])
    assert np.abs(base.to_numpy() - multi.to_numpy()).max() > 1e-3
    # a section without the image: that view is masked out, the others still sum to 1
    bare = sp.copy()
    del bare.uns["spatial"]
    weights = model.view_weights(bare)
    assert (weights["histology"] == 0).all()
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)


def test_new_section_maps_by_inference_only():
    sp, sc = simulate_spatial(n_spots=300, n_genes=80, n_ref_cells=400, random_state=2)
    first, second = sp[:150].copy(), sp[150:].copy()
    model = AttentionMapper(sc, first, cell_type_key="cell_type").train(**FAST)
    again = model.map(first)
    np.testing.assert_allclose(again.plan.toarray(), model.map().plan.toarray(), atol=1e-6)
    before = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    other = model.map(second)
    for k, v in model.module.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert other.n_spots == second.n_obs
    labels = sc.obs["cell_type"]
    held_out = _scores(second, other.cell_type_fractions(labels))
    trained_on = _scores(first, model.map().cell_type_fractions(labels))
    assert held_out["rmse"] < 0.15 and held_out["rmse"] < 1.5 * trained_on["rmse"]


def test_save_load_round_trip(tmp_path, data, trained):
    sp, sc = data
    path = trained.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "model.json", "weights.pt"]
    loaded = AttentionMapper.load(path, sc)
    a, b = trained.map(sp), loaded.map(sp)
    np.testing.assert_array_equal(a.plan.toarray(), b.plan.toarray())
    np.testing.assert_array_equal(a.outputs["latent"], b.outputs["latent"])
    np.testing.assert_array_equal(
        trained.get_latent_representation(kind="cells"),
        loaded.get_latent_representation(kind="cells"),
    )
    with pytest.raises(InputError, match="map"):
        loaded.map()


def test_saved_reference_stands_for_the_reference(tmp_path, data, trained):
    """A model saved with its reference cells loads without the reference and maps as with
    it: with cell types, and without types from a layer (the counts come back in X)."""
    sp, sc = data
    loaded = AttentionMapper.load(trained.save(tmp_path / "typed"))
    np.testing.assert_array_equal(loaded.map(sp).plan.toarray(), trained.map(sp).plan.toarray())
    layered = sc.copy()
    layered.layers["counts"] = layered.X.copy()
    layered.X = layered.X * 0.5  # not counts: the model must read the layer
    model = AttentionMapper(layered, sp, layer_sc="counts").train(max_epochs=1, device="cpu")
    loaded = AttentionMapper.load(model.save(tmp_path / "plain"))
    assert loaded.layer_sc is None and loaded.cell_type_key is None
    a, b = model.map(sp), loaded.map(sp)
    np.testing.assert_array_equal(b.plan.toarray(), a.plan.toarray())
    np.testing.assert_array_equal(b.cell_totals, a.cell_totals)
    bare = AttentionMapper.load(model.save(tmp_path / "bare", reference=False), layered)
    with pytest.raises(InputError, match="without its reference cells"):
        AttentionMapper.load(tmp_path / "bare")
    np.testing.assert_array_equal(bare.map(sp).plan.toarray(), a.plan.toarray())


def test_same_seed_same_mapping(data):
    sp, sc = data
    runs = [
        AttentionMapper(sc, sp, cell_type_key="cell_type")
        .train(max_epochs=3, device="cpu", random_state=seed)
        .map()
        .plan.toarray()
        for seed in (0, 0, 1)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - runs[2]).max() > 1e-6


def test_map_cells_checkpoints_and_resumes(tmp_path, data, capfd):
    sp, sc = data
    kw = dict(method="attention", cell_type_key="cell_type", max_epochs=4, device="cpu")
    full = tl.map_cells(sc, sp.copy(), **kw)
    tl.map_cells(sc, sp.copy(), checkpoint_dir=tmp_path, **kw)
    assert (tmp_path / "fit-000" / "last.ckpt").exists()
    again = tl.map_cells(sc, sp.copy(), checkpoint_dir=tmp_path, resume=True, **kw)
    assert "cellweave: resuming from" in capfd.readouterr().err
    np.testing.assert_allclose(again.plan.toarray(), full.plan.toarray(), rtol=1e-6, atol=1e-9)


def test_cells_and_spots_share_one_latent_space(data, trained):
    sp, sc = data
    cells = trained.get_latent_representation(kind="cells")
    spots = trained.get_latent_representation(kind="spots")
    assert cells.shape == (sc.n_obs, 32) and spots.shape == (sp.n_obs, 32)
    truth = sp.obsm["true_fractions"]
    richer = []
    for t in truth.columns:
        centre = cells[(sc.obs["cell_type"] == t).to_numpy()].mean(0)
        nearest = np.argsort(((spots - centre) ** 2).sum(1))[:20]
        richer.append(truth[t].to_numpy()[nearest].mean() > 1.5 * truth[t].mean())
    assert np.mean(richer) >= 5 / 6


def test_spots_without_counts_are_left_out(data):
    sp, sc = data
    sp = sp.copy()
    X = sp.X.toarray()
    X[:3] = 0
    sp.X = sparse.csr_matrix(X)
    with pytest.warns(UserWarning, match="no counts"):
        mapping = tl.map_cells(sc, sp, method="attention", cell_type_key="cell_type", max_epochs=2)
    assert (mapping.spot_mass[:3] == 0).all() and np.allclose(mapping.spot_mass[3:], 1.0)
    assert np.isnan(sp.obsm["X_cellweave"][:3]).all()
    assert np.isfinite(sp.obsm["X_cellweave"][3:]).all()


def _with(adata, **changes):
    out = adata.copy()
    for key, value in changes.items():
        setattr(out, key, value)
    return out


def test_bad_inputs_are_one_line_errors(data):
    sp, sc = data
    kw = dict(method="attention", max_epochs=1, device="cpu")
    logged = _with(sc, X=np.log1p(sc.X.toarray()))
    cases = [
        (NotCountsError, "raw counts", (logged, sp), {}),
        (NotCountsError, "raw counts", (sc, _with(sp, X=np.log1p(sp.X.toarray()))), {}),
        (MissingKeyError, "cell_kind", (sc, sp), {"cell_type_key": "cell_kind"}),
        (NoSharedFeaturesError, "share", (sc, _renamed(sp)), {}),
        (MissingKeyError, "protein", (sc, sp), {"modality_key": "protein"}),
        (InvalidOptionError, "likelihood", (sc, sp), {"likelihood": "zinb"}),
        (InvalidOptionError, "ring_weights", (sc, sp), {"ring_weights": (-1.0,)}),
        (EmptyDataError, "no spot", (sc, _with(sp, X=sp.X * 0)), {}),
    ]
    one_type = sc.copy()
    one_type.obs["one"] = "a"
    cases.append((InputError, "at least 2", (one_type, sp), {"cell_type_key": "one"}))
    rows = sp.copy()
    rows.obsm["protein"] = np.ones((sp.n_obs, 3))
    rows.obsm["protein"][0, 0] = np.nan
    cases.append((NonFiniteError, "NaN", (sc, rows), {"modality_key": "protein"}))
    for error, words, (a, b), options in cases:
        with pytest.raises(error, match=words) as info:
            tl.map_cells(a, b, **kw, **options)
        assert "\n" not in str(info.value)
    frame = sp.copy()  # a DataFrame modality (e.g. named proteins) is accepted
    frame.obsm["protein"] = pd.DataFrame(np.ones((sp.n_obs, 2)), index=sp.obs_names)
    assert AttentionMapper(sc, frame, modality_key="protein").dims["modality"] == 2


def _renamed(adata):
    out = adata.copy()
    out.var_names = [f"other_{g}" for g in adata.var_names]
    return out


def test_cli_maps_with_the_attention_method(tmp_path, data):
    from cellweave import io
    from cellweave.cli import main

    sp, sc = data
    sp, sc = sp.copy(), sc.copy()
    for adata in (sp, sc):
        del adata.uns["sim"]
    io.write(sp, tmp_path / "sp.h5ad")
    io.write(sc, tmp_path / "sc.h5ad")
    out = tmp_path / "out.h5ad"
    args = [str(tmp_path / "sc.h5ad"), str(tmp_path / "sp.h5ad"), "-o", str(out)]
    args += ["--method", "attention", "--cell-type-key", "cell_type", "--param", "max_epochs=2"]
    assert main(["map", *args]) == 0
    result = ad.read_h5ad(out)
    assert result.uns["mapping"]["method"] == "attention"
    assert {"cell_type_fractions", "view_weights", "X_cellweave"} <= set(result.obsm)


@pytest.mark.parametrize(
    "options",
    [
        {"platform_factor": False},
        {"top_k": 0, "likelihood": "poisson"},
        {"top_k": 12, "prior": True, "refine_cells": True, "shrink": 0.5},
        {"profiles": "counts", "refine_steps": 0},
    ],
)
def test_ablation_switches_map(data, options):
    sp, sc = data
    model = AttentionMapper(sc, sp, cell_type_key="cell_type", **options).train(**FAST)
    mapping = model.map()
    if options.get("top_k") == 0:  # every cell is a candidate of every spot
        cand = model.section.cand
        assert all(len(set(row.tolist())) == sc.n_obs for row in cand)
        assert mapping.plan.getnnz(axis=0).min() >= 0.95 * sc.n_obs  # some weights underflow
    fractions = mapping.cell_type_fractions(sc.obs["cell_type"])
    np.testing.assert_allclose(fractions.sum(1), 1.0, atol=1e-5)
    assert _scores(sp, fractions)["rmse"] < 0.15


def test_reference_without_types_maps_on_cells(data):
    sp, sc = data
    mapping = tl.map_cells(sc, sp.copy(), method="attention", **FAST)
    fractions = mapping.cell_type_fractions(sc.obs["cell_type"])
    assert _scores(sp, fractions)["rmse"] < 0.2
    assert mapping.plan.getnnz(axis=0).max() <= 50


def test_held_out_spots_are_a_seeded_fraction():
    from cellweave.mapping.attention.model import held_out_spots

    held = held_out_spots(200, 0.1, seed=3)
    assert len(held) == 20 and len(np.unique(held)) == 20 and held.max() < 200
    np.testing.assert_array_equal(held, held_out_spots(200, 0.1, seed=3))
    assert not np.array_equal(held, held_out_spots(200, 0.1, seed=4))
    assert len(held_out_spots(200, 0.0, seed=3)) == 0
    assert len(held_out_spots(30, 0.1, seed=3)) == 0  # 3 spots: too few to validate


def test_validation_stops_on_held_out_spots_and_maps_them_all(data):
    from cellweave.mapping.attention.options import MAX_EPOCHS, MIN_EPOCHS, VALIDATION

    sp, sc = data
    model = AttentionMapper(sc, sp, cell_type_key="cell_type")
    model.train(validation=VALIDATION, device="cpu")
    assert model.train_params["validation"] == VALIDATION
    assert model.train_params["max_epochs"] == MAX_EPOCHS
    assert model.train_params["epochs"] <= MAX_EPOCHS
    assert model.module.val_spots.numel() == round(VALIDATION * sp.n_obs)
    assert model.module.n_spots == sp.n_obs - model.module.val_spots.numel()
    fractions = model.map().cell_type_fractions(sc.obs["cell_type"])
    assert np.isfinite(fractions.to_numpy()).all()  # held-out spots are mapped too
    np.testing.assert_allclose(fractions.sum(1), 1.0, atol=1e-5)
    assert _scores(sp, fractions)["rmse"] < 0.15
    # the default: every spot trains, a fixed number of epochs
    plain = AttentionMapper(sc, sp, cell_type_key="cell_type").train(device="cpu")
    assert plain.train_params["validation"] == 0.0
    assert plain.train_params["epochs"] == plain.train_params["max_epochs"] == MIN_EPOCHS
    assert plain.module.val_spots.numel() == 0
    assert plain.module.n_spots == sp.n_obs
    with pytest.raises(InvalidOptionError, match="validation"):
        plain.train(validation=0.9)
