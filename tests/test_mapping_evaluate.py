"""Leave-gene-out evaluation of gene predictors (cellweave.mapping.evaluate)."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

import cellweave as cw
from cellweave.errors import DuplicateNamesError, InputError, NoSharedFeaturesError
from cellweave.mapping.evaluate import (
    MappingMethod,
    _summary,
    evaluate,
    fold_split,
    normalized_truth,
    shared_genes,
)


def _adata(X, genes, prefix="s"):
    a = ad.AnnData(np.asarray(X, dtype=np.float32))
    a.var_names = list(genes)
    a.obs_names = [f"{prefix}{i}" for i in range(a.n_obs)]
    return a


@pytest.fixture(scope="module")
def tiny():
    """12 spots x 10 genes (2 spatial-only / sc-only genes each side), 30 reference cells."""
    rng = np.random.default_rng(3)
    sp_genes = [f"g{i}" for i in range(10)] + ["sp_only"]
    sc_genes = ["sc_only"] + [f"g{i}" for i in range(9, -1, -1)]
    sp = _adata(rng.poisson(5, (12, 11)) + 1, sp_genes)
    sp.obsm["spatial"] = rng.random((12, 2))
    sc = _adata(rng.poisson(3, (30, 11)), sc_genes, prefix="c")
    return sc, sp


@pytest.fixture(scope="module")
def sim():
    spatial, reference = cw.sim.simulate_spatial(
        n_spots=300, n_genes=60, n_ref_cells=400, library_sd=0.6, random_state=0
    )
    return reference, spatial


# ----------------------------------------------------------------------------- protocol


def test_shared_genes_are_the_sorted_intersection(tiny):
    sc, sp = tiny
    assert list(shared_genes(sc, sp)) == sorted(f"g{i}" for i in range(10))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 60), k=st.integers(2, 10), seed=st.integers(0, 3))
def test_fold_split_covers_every_gene_once_and_is_reproducible(n, k, seed):
    genes = [f"g{i:02d}" for i in range(n)]
    if n < k:
        with pytest.raises(InputError, match="folds"):
            fold_split(genes, k, random_state=seed)
        return
    split = fold_split(genes, k, random_state=seed)
    flat = [g for fold in split for g in fold]
    assert len(split) == k
    assert sorted(flat) == genes and len(set(flat)) == n
    sizes = [len(f) for f in split]
    assert max(sizes) - min(sizes) <= 1
    assert split == fold_split(genes, k, random_state=seed)
    # exactly the recipe
    shuffled = np.random.default_rng(seed).permutation(np.array(genes, dtype=object))
    assert flat == list(shuffled)


@pytest.mark.parametrize("folds", [1, 0, 2.5, True])
def test_fold_split_rejects_bad_fold_counts(folds):
    with pytest.raises(InputError, match="folds"):
        fold_split(["a", "b", "c"], folds)


def test_normalized_truth_by_hand():
    X_test = np.array([[2.0, 1.0], [3.0, 0.0], [5.0, 5.0]])
    X_train = sparse.csr_matrix(np.array([[1.0, 3.0], [0.0, 0.0], [10.0, 0.0]]))
    truth, keep = normalized_truth(X_test, X_train)
    assert keep.tolist() == [True, False, True]
    np.testing.assert_allclose(truth, [[0.5, 0.25], [0.5, 0.5]])


def test_predictor_sees_training_genes_and_full_reference(tiny):
    sc, sp = tiny
    calls = []

    def spy(adata_sc, adata_sp, genes, *, random_state=0):
        calls.append((list(adata_sp.var_names), list(genes), adata_sc.n_vars, random_state))
        assert "spatial" in adata_sp.obsm
        return np.zeros((adata_sp.n_obs, len(genes)))

    result = evaluate(sc, sp, methods={"spy": spy}, folds=3, random_state=7)
    shared = sorted(f"g{i}" for i in range(10))
    assert [c[1] for c in calls] == result.folds
    for train, test, n_sc_genes, seed in calls:
        assert sorted(train + test) == shared and not set(train) & set(test)
        assert n_sc_genes == sc.n_vars and seed == 7
    assert result.folds == fold_split(shared, 3, random_state=7)


def _oracle(sp, *, normalized):
    """Predicts held-out genes from the full spatial data: the truth of either scheme."""

    def predict(adata_sc, adata_sp, genes, *, random_state=0):
        X = np.asarray(sp[adata_sp.obs_names, list(genes)].X, dtype=np.float64)
        if normalized:
            X = X / np.asarray(adata_sp.X.sum(axis=1)).reshape(-1, 1)
        return X

    return predict


def test_perfect_predictor_scores_perfectly(tiny):
    sc, sp = tiny
    methods = {
        "oracle_norm": _oracle(sp, normalized=True),
        "oracle_raw": _oracle(sp, normalized=False),
    }
    result = evaluate(sc, sp, methods=methods, folds=4)
    norm, raw = result.tables["normalized"], result.tables["raw"]
    for table, best in ((norm, "oracle_norm"), (raw, "oracle_raw")):
        assert table.loc[best, "pcc"] == pytest.approx(1.0)
        assert table.loc[best, "ssim"] == pytest.approx(1.0)
        assert table.loc[best, "rmse"] == pytest.approx(0.0, abs=1e-6)
        assert table.loc[best, "js"] == pytest.approx(0.0, abs=1e-6)
        assert table.index[0] == best and table.loc[best, "AS"] == pytest.approx(1.0)
    # every held-out gene scored once per scheme and method
    per = result.per_gene
    assert len(per) == 2 * 3 * 10
    assert per.groupby(["scheme", "method"])["gene"].nunique().eq(10).all()


def test_depth_beats_random_on_raw_but_not_on_normalized(sim):
    reference, spatial = sim

    def random(adata_sc, adata_sp, genes, *, random_state=0):
        return np.random.default_rng(random_state).random((adata_sp.n_obs, len(genes)))

    result = evaluate(reference, spatial, methods={"random": random}, folds=5)
    raw, norm = result.tables["raw"], result.tables["normalized"]
    assert raw.loc["depth", "pcc"] > raw.loc["random", "pcc"] + 0.15
    assert raw.loc["depth", "AS"] > raw.loc["random", "AS"]
    assert norm.loc["depth", "pcc"] < norm.loc["random", "pcc"] + 0.05
    assert norm.loc["depth", "AS"] < norm.loc["random", "AS"]


def test_accuracy_score_ranking_by_hand():
    """Three methods, two genes; AS = mean over metrics of (rank / n), best rank n."""
    rows = []
    values = {  # method: (PCC, SSIM, RMSE, JS) per gene -> means
        "a": [(0.9, 0.1, 0.5, 0.30), (0.7, 0.3, 0.7, 0.30)],  # PCC .8 SSIM .2 RMSE .6 JS .3
        "b": [(0.5, 0.5, 0.2, 0.10), (0.3, 0.7, 0.4, 0.50)],  # .4 .6 .3 .3
        "c": [(0.1, 0.4, 0.9, 0.10), (0.1, 0.4, 0.9, 0.10)],  # .1 .4 .9 .1
    }
    for method, genes in values.items():
        for j, (p, s, r, j_) in enumerate(genes):
            rows.append(("raw", method, 0, f"g{j}", p, s, r, j_))
    per_gene = pd.DataFrame(
        rows, columns=["scheme", "method", "fold", "gene", "PCC", "SSIM", "RMSE", "JS"]
    )
    timing = {m: [1.0, 2.0] for m in values}
    table = _summary(per_gene, "raw", dict.fromkeys(values, "peer"), timing, "mean")
    # PCC ranks a3 b2 c1; SSIM b3 c2 a1; RMSE b3 a2 c1; JS tie a/b (1.5 each), c3
    expected = {
        "a": (3 + 1 + 2 + 1.5) / 12,
        "b": (2 + 3 + 3 + 1.5) / 12,
        "c": (1 + 2 + 1 + 3) / 12,
    }
    assert list(table.index) == ["b", "a", "c"]
    for m, v in expected.items():
        assert table.loc[m, "AS"] == pytest.approx(v)
    assert table.loc["a", "pcc"] == pytest.approx(0.8)  # median of 0.9, 0.7
    assert table.loc["c", "seconds"] == 1.0 and table.loc["c", "cpu_seconds"] == 2.0


# ----------------------------------------------------------------------------- results


@pytest.fixture(scope="module")
def result(tiny):
    sc, sp = tiny
    return evaluate(sc, sp, methods=["knn"], folds=3, method_params={"knn": {"n_neighbors": 5}})


def test_table_columns_and_kinds(result):
    for table in result.tables.values():
        assert list(table.columns) == [
            "kind",
            "pcc",
            "ssim",
            "rmse",
            "js",
            "AS",
            "seconds",
            "cpu_seconds",
        ]
        assert set(table.index) == {"knn", "depth"}  # depth is always reported
        assert (table["kind"] == "baseline").all()
        assert (table[["seconds", "cpu_seconds"]] >= 0).all().all()
    assert result.table is result.tables["normalized"]
    assert result.protocol["method_params"] == {"knn": {"n_neighbors": 5}}
    assert set(result.ranking()) == {1, 2}


def test_json_schema_is_exact(result):
    data = result.to_json_dict()
    assert list(data) == ["folds", "genes", "scheme", "default", "methods"]
    assert data["folds"] == 3 and data["genes"] == 10 and data["scheme"] == "normalized"
    assert isinstance(data["default"], str)
    for entry in data["methods"].values():
        assert list(entry) == ["kind", "pcc", "ssim", "rmse", "js", "seconds", "cpu_seconds"]
        assert entry["kind"] in ("cellweave", "peer", "baseline")
        assert all(isinstance(entry[k], float) for k in list(entry)[1:])
    raw = result.to_json_dict("raw", default_name="knn")
    assert raw["scheme"] == "raw" and raw["default"] == "knn"
    assert raw["methods"]["knn"]["pcc"] == pytest.approx(result.tables["raw"].loc["knn", "pcc"])
    with pytest.raises(InputError, match="not evaluated"):
        result.to_json_dict("other")


def test_write_json_is_atomic_and_replaces(result, tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    result.write_json(path)
    path.write_text("old content that is longer than nothing")
    result.write_json(path, "raw")
    assert json.loads(path.read_text()) == result.to_json_dict("raw")
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_single_scheme(tiny):
    sc, sp = tiny
    res = evaluate(sc, sp, methods=["depth"], folds=2, scheme="raw")
    assert res.schemes == ["raw"] and res.to_json_dict()["scheme"] == "raw"
    assert set(res.per_gene["scheme"]) == {"raw"}


def test_zero_total_spots_are_left_out_of_the_normalized_scores(tiny):
    sc, sp = tiny
    sp = sp.copy()
    sp.X[0] = 0
    res = evaluate(sc, sp, methods=["depth"], folds=2)
    assert res.protocol["spots_left_out_per_fold"] == [1, 1]


# ----------------------------------------------------------------------------- errors


def test_input_errors(tiny):
    sc, sp = tiny
    with pytest.raises(NoSharedFeaturesError):
        evaluate(sc, _adata(np.ones((3, 2)), ["x", "y"]), methods=["depth"])
    dup = sp.copy()
    dup.var_names = ["g0"] * 2 + list(sp.var_names[2:])
    with pytest.raises(DuplicateNamesError):
        evaluate(sc, dup, methods=["depth"])
    with pytest.raises(InputError, match="folds"):
        evaluate(sc, sp, folds=11, methods=["depth"])
    with pytest.raises(InputError, match="unknown mapping method"):
        evaluate(sc, sp, methods="depth,nope")
    with pytest.raises(InputError, match="method_params"):
        evaluate(sc, sp, methods=["depth"], method_params={"knn": {}})
    with pytest.raises(InputError, match="scheme"):
        evaluate(sc, sp, methods=["depth"], scheme="log")
    neg = sp.copy()
    neg.X[0, 0] = -1
    with pytest.raises(InputError, match="negative"):
        evaluate(sc, neg, methods=["depth"])
    evaluate(sc, neg, methods=["depth"], scheme="raw", folds=2)  # raw values may be negative


def test_a_broken_method_is_named(tiny):
    sc, sp = tiny

    def broken(adata_sc, adata_sp, genes, *, random_state=0):
        return np.zeros((adata_sp.n_obs, len(genes) + 1))

    with pytest.raises(RuntimeError, match="'broken'"):
        evaluate(sc, sp, methods={"broken": MappingMethod("broken", "peer", broken)}, folds=2)


def test_per_scheme_predictions(tiny):
    sc, sp = tiny
    norm, raw = _oracle(sp, normalized=True), _oracle(sp, normalized=False)

    def both(adata_sc, adata_sp, genes, *, random_state=0):
        return {
            "normalized": norm(adata_sc, adata_sp, genes),
            "raw": raw(adata_sc, adata_sp, genes),
        }

    res = evaluate(sc, sp, methods={"both": both}, folds=2)
    for s in ("normalized", "raw"):
        assert res.tables[s].loc["both", "pcc"] == pytest.approx(1.0)

    def half(adata_sc, adata_sp, genes, *, random_state=0):
        return {"raw": raw(adata_sc, adata_sp, genes)}

    with pytest.raises(RuntimeError, match="not \\['normalized'\\]"):
        evaluate(sc, sp, methods={"half": half}, folds=2)
    evaluate(sc, sp, methods={"half": half}, folds=2, scheme="raw")


def test_cellweave_methods_go_through_predict_genes(tiny, monkeypatch):
    """Relative expression for the normalized scheme, times the spot totals for raw."""
    from cellweave.mapping import api
    from cellweave.mapping.evaluate import available_methods

    sc, sp = tiny
    seen = []

    def fake(adata_sc, adata_sp, genes, *, method, random_state, scale, **params):
        seen.append((method, scale, params))
        return np.tile(np.arange(1.0, len(genes) + 1), (adata_sp.n_obs, 1))

    monkeypatch.setattr(api, "predict_genes", fake)
    methods = available_methods()
    assert {m for m, v in methods.items() if v.kind == "cellweave"} == set(api.EVALUATED_METHODS)
    name = api.DEFAULT_METHOD
    predict = methods[name].predict
    genes = ["g1", "g4"]
    fold = sp[:, [g for g in sp.var_names if g not in genes]].copy()
    out = predict(sc, fold, genes, random_state=3, perplexity=5)
    totals = np.asarray(fold[:, [g for g in fold.var_names if g != "sp_only"]].X.sum(axis=1))
    np.testing.assert_allclose(out["normalized"], np.tile([1.0, 2.0], (sp.n_obs, 1)))
    np.testing.assert_allclose(out["raw"], totals.reshape(-1, 1) * [1.0, 2.0])
    assert seen == [(name, "proportions", {"perplexity": 5})]
    res = evaluate(sc, sp, methods=[name], folds=2)
    assert res.to_json_dict()["default"] == name
    assert res.table.loc[name, "kind"] == "cellweave"


def test_auto_names_the_default_method(tiny, monkeypatch):
    from cellweave.mapping import api

    def fake(adata_sc, adata_sp, genes, *, method, random_state, scale, **params):
        return np.ones((adata_sp.n_obs, len(genes)))

    monkeypatch.setattr(api, "predict_genes", fake)
    sc, sp = tiny
    res = evaluate(sc, sp, methods="auto", folds=2, scheme="raw")
    assert set(res.table.index) == {api.DEFAULT_METHOD, "depth"}


def test_equal_accuracy_scores_tie():
    """Equal AS reached by different rank combinations share one rank (no float noise)."""
    values = {  # ranks on PCC, SSIM, RMSE, JS: a 3,1,3,1; b 1,3,1,3; c 2,2,2,2
        "a": (0.9, 0.1, 0.1, 0.9),
        "b": (0.1, 0.9, 0.9, 0.1),
        "c": (0.5, 0.5, 0.5, 0.5),
    }
    per_gene = pd.DataFrame(
        [("raw", m, 0, "g", *v) for m, v in values.items()],
        columns=["scheme", "method", "fold", "gene", "PCC", "SSIM", "RMSE", "JS"],
    )
    timing = {m: [0.0, 0.0] for m in values}
    table = _summary(per_gene, "raw", dict.fromkeys(values, "peer"), timing, "mean")
    assert table["AS"].nunique() == 1
    assert list(table.index) == ["a", "c", "b"]  # ties ordered by PCC


def test_combine_and_ranking_among_a_subset(sim):
    reference, spatial = sim
    first = evaluate(reference, spatial, methods=["depth", "knn"], folds=3)
    later = evaluate(reference, spatial, methods=["spage"], folds=3)
    both = evaluate(reference, spatial, methods=["depth", "knn", "spage"], folds=3)
    merged = first.combine(later)
    for s in both.schemes:
        cols = ["pcc", "ssim", "rmse", "js", "AS"]
        pd.testing.assert_frame_equal(
            merged.tables[s][cols].sort_index(), both.tables[s][cols].sort_index()
        )
    # ranking among a subset recomputes AS on that subset only
    sub = merged.ranking("raw", among=["depth", "knn"])
    alone = first.ranking("raw")
    assert sub.to_dict() == alone.to_dict()
    with pytest.raises(InputError, match="not evaluated"):
        merged.ranking("raw", among=["depth", "nope"])
    other_folds = evaluate(reference, spatial, methods=["spage"], folds=4)
    with pytest.raises(InputError, match="folds"):
        first.combine(other_folds)
