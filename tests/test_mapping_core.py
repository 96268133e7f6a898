"""Mapping core: feature preparation, OT solvers, the gradient mapper, recovery on the simulator."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from cellweave.errors import (
    DuplicateNamesError,
    EmptyDataError,
    InputError,
    NoSharedFeaturesError,
)
from cellweave.mapping import features, ot
from cellweave.mapping.api import map_cells
from cellweave.mapping.gradient import gradient_plan
from cellweave.sim import simulate_spatial


def make(X, genes, prefix="c") -> ad.AnnData:
    adata = ad.AnnData(np.asarray(X, dtype=np.float32))
    adata.obs_names = [f"{prefix}{i}" for i in range(adata.n_obs)]
    adata.var_names = list(genes)
    return adata


@pytest.fixture(scope="module")
def single_cell_tissue():
    """One cell per spot (MERFISH-like), with the true type of every spot."""
    sp, ref = simulate_spatial(
        n_spots=300, grid="random", cells_per_spot=1, n_genes=60, n_ref_cells=400, random_state=1
    )
    return sp, ref


@pytest.fixture(scope="module")
def mixed_tissue():
    sp, ref = simulate_spatial(n_spots=300, n_genes=80, n_ref_cells=500, random_state=2)
    return sp, ref


# ------------------------------------------------------------------------------ features


def test_shared_genes_in_spatial_order_and_subset():
    sc = make(np.ones((3, 4)), ["a", "b", "c", "d"])
    sp = make(np.ones((2, 3)), ["d", "x", "b"], "s")
    assert list(features.shared_genes(sc, sp)) == ["d", "b"]
    assert list(features.shared_genes(sc, sp, genes=["b", "d"])) == ["b", "d"]
    with pytest.raises(InputError, match="not in both"):
        features.shared_genes(sc, sp, genes=["a", "b"])


def test_no_shared_genes_raises():
    sc = make(np.ones((3, 2)), ["a", "b"])
    sp = make(np.ones((3, 2)), ["x", "y"], "s")
    with pytest.raises(NoSharedFeaturesError, match="share 0"):
        features.prepare_features(sc, sp)


def test_duplicate_genes_raise():
    sc = make(np.ones((3, 3)), ["a", "b", "b"])
    sp = make(np.ones((3, 2)), ["a", "b"], "s")
    with pytest.raises(DuplicateNamesError, match="var_names_make_unique"):
        features.prepare_features(sc, sp)


def test_negative_values_raise():
    sc = make(np.ones((3, 3)), "abc")
    sp = make(-np.ones((3, 3)), "abc", "s")
    with pytest.raises(InputError, match="negative"):
        features.prepare_features(sc, sp)


def test_reference_without_counts_raises():
    sc = make(np.zeros((3, 3)), "abc")
    sp = make(np.ones((3, 3)), "abc", "s")
    with pytest.raises(EmptyDataError, match="no reference cell"):
        features.prepare_features(sc, sp)


def test_zscore_per_platform_removes_gene_wise_platform_factors():
    rng = np.random.default_rng(0)
    X = rng.gamma(2.0, 1.0, size=(40, 6))
    factor = np.array([0.1, 1.0, 5.0, 2.0, 0.5, 30.0])  # a gene-wise platform effect
    sc, sp = make(X, "abcdef"), make(X * factor, "abcdef", "s")
    f = features.prepare_features(sc, sp, normalize="none", n_pcs=None)
    np.testing.assert_allclose(f.sc, f.sp, atol=1e-5)
    # without scaling the platforms differ
    g = features.prepare_features(sc, sp, normalize="none", scale=False, n_pcs=None)
    assert np.abs(g.sc - g.sp).max() > 1


def test_features_shapes_pcs_and_unused_cells():
    rng = np.random.default_rng(1)
    Xsc = rng.poisson(2.0, size=(30, 12)).astype(float)
    Xsc[3] = 0  # a cell without counts cannot be mapped
    sc, sp = (
        make(Xsc, [f"g{i}" for i in range(12)]),
        make(rng.poisson(3.0, (20, 12)), [f"g{i}" for i in range(12)], "s"),
    )
    f = features.prepare_features(sc, sp, n_pcs=5)
    assert f.sc.shape == (29, 5) and f.sp.shape == (20, 5)
    assert not f.cell_used[3] and f.cell_used.sum() == 29
    np.testing.assert_allclose(f.cell_totals, Xsc.sum(1))
    with pytest.raises(InputError, match="gene_weights"):
        features.prepare_features(sc, sp, gene_weights=[1.0, 2.0])


def test_gene_weights_zero_removes_a_gene():
    rng = np.random.default_rng(2)
    X = rng.gamma(2.0, 1.0, size=(25, 4))
    sc, sp = make(X, "abcd"), make(X, "abcd", "s")
    noisy = sp.copy()
    noisy.X[:, 3] = rng.permutation(noisy.X[:, 3])  # gene d carries no information
    opts = dict(normalize="log", n_pcs=None, gene_weights={"d": 0.0})  # no shared total
    f = features.prepare_features(sc, noisy, **opts)
    g = features.prepare_features(sc, sp, **opts)
    np.testing.assert_allclose(f.sp, g.sp, atol=1e-5)


# ------------------------------------------------------------------ mapping methods (transport)


def test_entropic_plan_switches_to_candidate_pairs_above_max_dense():
    rng = np.random.default_rng(5)
    F_sc, F_sp = rng.normal(size=(200, 5)), rng.normal(size=(150, 5))
    plan = ot.entropic_plan(
        F_sc, F_sp, epsilon=0.3, unbalanced=None, n_candidates=None, max_dense=100, device="cpu"
    )
    assert sparse.issparse(plan) and plan.shape == (200, 150)
    assert plan.nnz <= 200 * 50 + 150 * 50 < 200 * 150  # restricted support
    np.testing.assert_allclose(np.asarray(plan.sum(0)).ravel(), 1 / 150, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(plan.sum(1)).ravel(), 1 / 200, rtol=1e-5)


def test_unbalanced_candidates_come_from_the_spot_side():
    rng = np.random.default_rng(10)
    F_sc, F_sp = rng.normal(size=(300, 6)), rng.normal(size=(80, 6))
    plan = ot.entropic_plan(F_sc, F_sp, epsilon=0.1, unbalanced=0.1, n_candidates=10)
    per_spot = np.diff(plan.T.tocsr().indptr)
    assert (per_spot <= 10).all() and plan.nnz <= 800
    cells, spots, cost = ot.candidate_pairs(F_sc, F_sp, k=10, sides="spots", device="cpu")
    both = ot.candidate_pairs(F_sc, F_sp, k=10, sides="both", device="cpu")
    assert len(cells) == 800 and len(both[0]) > 800
    assert set(zip(cells, spots, strict=True)) <= set(zip(both[0], both[1], strict=True))
    A = F_sc / np.linalg.norm(F_sc, axis=1, keepdims=True)
    B = F_sp / np.linalg.norm(F_sp, axis=1, keepdims=True)
    np.testing.assert_allclose(cost, 1 - (A[cells] * B[spots]).sum(1), atol=1e-5)


def test_softmax_plan_spot_marginals_and_perplexity():
    rng = np.random.default_rng(6)
    F_sc, F_sp = rng.normal(size=(300, 8)), rng.normal(size=(50, 8))
    plan = ot.softmax_plan(F_sc, F_sp, perplexity=20, device="cpu")
    np.testing.assert_allclose(np.asarray(plan.sum(0)).ravel(), 1 / 50, rtol=1e-6)
    W = (plan.T.toarray()) * 50
    H = -(np.where(W > 0, W * np.log(np.where(W > 0, W, 1)), 0)).sum(1)
    np.testing.assert_allclose(np.exp(H), 20, rtol=1e-3)
    assert (np.diff(plan.T.tocsr().indptr) <= 80).all()  # 4 * perplexity candidates


# ------------------------------------------------------------------------------ recovery


def _type_accuracy(sp, ref, method, **params):
    mapping = map_cells(ref, sp, method=method, cell_type_key="cell_type", **params)
    fractions = sp.obsm["cell_type_fractions"]
    truth = sp.obsm["true_fractions"][fractions.columns]
    return mapping, float((fractions.to_numpy().argmax(1) == truth.to_numpy().argmax(1)).mean())


@pytest.mark.parametrize(
    ("method", "params", "floor"),
    [
        ("softmax", {}, 0.9),
        ("ot", {}, 0.9),
        ("gradient", {"max_epochs": 40}, 0.8),
    ],
)
def test_single_cell_spots_get_their_true_type(single_cell_tissue, method, params, floor):
    sp, ref = single_cell_tissue
    sp = sp.copy()
    mapping, accuracy = _type_accuracy(sp, ref, method, **params)
    assert accuracy > floor, accuracy
    assert mapping.plan.shape == (ref.n_obs, sp.n_obs)


def test_fgw_on_single_cell_spots(single_cell_tissue):
    sp, ref = single_cell_tissue
    sp, ref = sp[:100].copy(), ref[:150].copy()
    mapping, accuracy = _type_accuracy(sp, ref, "fgw", alpha=0.3, max_iter=10)
    assert accuracy > 0.6, accuracy  # chance: about 1/6; balanced marginals limit it
    np.testing.assert_allclose(mapping.cell_mass, 1 / 150, rtol=1e-3)
    np.testing.assert_allclose(mapping.spot_mass, 1 / 100, rtol=1e-3)


@pytest.mark.parametrize(
    ("method", "params", "floor"),
    [("ot", {}, 0.5), ("gradient", {"max_epochs": 100}, 0.7)],
)
def test_fractions_correlate_with_truth_on_mixed_spots(mixed_tissue, method, params, floor):
    sp, ref = mixed_tissue
    sp = sp.copy()
    map_cells(ref, sp, method=method, cell_type_key="cell_type", **params)
    est = sp.obsm["cell_type_fractions"]
    truth = sp.obsm["true_fractions"][est.columns]
    np.testing.assert_allclose(est.sum(1), 1.0, atol=1e-9)
    r = [np.corrcoef(est[t], truth[t])[0, 1] for t in est.columns]
    assert min(r) > floor and np.median(r) > floor + 0.1, r


# ------------------------------------------------------------------------------ gradient


def test_gradient_mapper_reproducible_and_seed_dependent(single_cell_tissue):
    sp, ref = single_cell_tissue
    f = features.prepare_features(ref[:80], sp[:60], n_pcs=None, scale=False)
    p1, _ = gradient_plan(f.sc, f.sp, max_epochs=5, random_state=0, device="cpu")
    p2, _ = gradient_plan(f.sc, f.sp, max_epochs=5, random_state=0, device="cpu")
    p3, _ = gradient_plan(f.sc, f.sp, max_epochs=5, random_state=1, device="cpu")
    np.testing.assert_array_equal(p1.toarray(), p2.toarray())
    assert np.abs(p1.toarray() - p3.toarray()).max() > 0
    np.testing.assert_allclose(p1.sum(), 1.0, rtol=1e-5)


def test_gradient_minibatches_and_candidates_agree_with_full_batch(single_cell_tissue):
    sp, ref = single_cell_tissue
    f = features.prepare_features(ref[:120], sp[:90], n_pcs=None, scale=False)
    full, _ = gradient_plan(f.sc, f.sp, max_epochs=10, random_state=0, device="cpu")
    mini, info = gradient_plan(
        f.sc, f.sp, max_epochs=5, batch_size=60, n_candidates=30, random_state=0, device="cpu"
    )
    assert mini.nnz <= 120 * 30 and info["epochs"] == 5
    # both put each cell on a similar spot profile: compare the spot expression they predict
    G_full = (full.T @ f.sc) / np.asarray(full.sum(0)).T
    G_mini = (mini.T @ f.sc) / np.maximum(np.asarray(mini.sum(0)).T, 1e-12)
    r_full = np.corrcoef(G_full.ravel(), f.sp.ravel())[0, 1]
    r_mini = np.corrcoef(np.asarray(G_mini).ravel(), f.sp.ravel())[0, 1]
    assert r_full > 0.5 and r_mini > 0.5, (r_full, r_mini)


# ------------------------------------------------------------------------------ sizes


def test_fgw_refuses_a_dense_problem_too_large():
    rng = np.random.default_rng(8)
    sc = make(rng.poisson(5.0, (11_000, 3)) + 1, "abc")
    sp = make(rng.poisson(5.0, (10_000, 3)) + 1, "abc", "s")
    sp.obsm["spatial"] = rng.random((10_000, 2))
    with pytest.raises(InputError, match="subsample"):
        map_cells(sc, sp, method="fgw")


def test_all_zero_spots_are_handled(mixed_tissue):
    sp, ref = mixed_tissue
    sp = sp[:60].copy()
    sp.X = sp.X.toarray()
    sp.X[:5] = 0
    with pytest.warns(UserWarning, match="no counts on the shared genes"):
        mapping = map_cells(ref, sp)
    assert (mapping.spot_mass[:5] == 0).all() and (mapping.spot_mass[5:] > 0).all()
    pred = mapping.predict(ref.X[:, :3], scale="proportions")
    assert np.isfinite(pred).all()
    overall = np.asarray(ref.X[:, :3].mean(0)).ravel() / ref.X.sum(1).mean()
    np.testing.assert_allclose(pred[:5], np.tile(overall, (5, 1)), rtol=1e-5)
    fractions = mapping.cell_type_fractions(ref.obs["cell_type"])
    np.testing.assert_allclose(fractions.sum(1), 1.0)


def test_mapping_frame_of_unused_cells_is_empty():
    rng = np.random.default_rng(9)
    X = rng.poisson(3.0, size=(40, 6)).astype(float)
    X[0] = 0
    sc, sp = make(X, "abcdef"), make(rng.poisson(3.0, (15, 6)), "abcdef", "s")
    mapping = map_cells(sc, sp, method="softmax", perplexity=5)
    assert mapping.cell_mass[0] == 0 and mapping.assign()[0] == -1
    location = mapping.cell_location()
    assert pd.isna(location["spot"].iloc[0]) and location["probability"].iloc[0] == 0
