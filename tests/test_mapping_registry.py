"""The mapping registry: solvers, baselines and peers with declared options, one check before
any work, and results written the scanpy way (key_added, copy)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from cellweave.cli import main
from cellweave.errors import InvalidOptionError
from cellweave.mapping import Mapping, api, evaluate, map_cells, methods
from cellweave.mapping.evaluate import available_methods, register_method
from cellweave.registry import undeclared_keywords
from cellweave.sim import simulate_spatial

SOLVERS = ("ot", "softmax", "gradient", "fgw", "attention")
BAD = [
    ({"bogus": 1}, "bogus"),
    ({"epsilon": -1}, "epsilon must be a number >= 0"),
    ({"n_pcs": "abc"}, "n_pcs must be"),
    ({"method": "gradient", "max_epochs": -3}, "max_epochs must be an integer >= 1"),
    ({"method": "nope"}, "unknown mapping method 'nope'"),
    ({"method": "depth"}, "unknown mapping method 'depth'"),  # a baseline, not a solver
]


@pytest.fixture(scope="module")
def pair():
    sp, ref = simulate_spatial(n_spots=120, n_genes=60, n_ref_cells=200, random_state=1)
    return sp, ref


@pytest.fixture
def peers(monkeypatch):
    """Peers registered in a test are gone after it."""
    monkeypatch.setattr(api.METHODS, "_methods", dict(api.METHODS._methods))


def test_the_registry_holds_solvers_and_baselines():
    assert api.METHODS.names("solver") == list(SOLVERS) == list(api.EVALUATED_METHODS)
    assert api.METHODS.names("baseline") == ["depth", "knn", "spage"]
    assert api.get_method("auto").name == api.DEFAULT_METHOD == "ot"
    kinds = {name: m.kind for name, m in available_methods().items()}
    assert kinds == {
        **dict.fromkeys(SOLVERS, "cellweave"),
        **dict.fromkeys(("depth", "knn", "spage"), "baseline"),
    }


@pytest.mark.parametrize("name", SOLVERS)
def test_every_solver_keyword_is_declared(name):
    method = api.METHODS[name]
    assert undeclared_keywords(method.runner, method, methods.FIXED) == set()
    assert set(methods.FEATURE_OPTIONS) <= set(method.options)


@pytest.mark.parametrize("name", ["depth", "knn", "spage"])
def test_every_baseline_keyword_is_declared(name):
    method = api.METHODS[name]
    assert undeclared_keywords(method.runner, method, ("random_state",)) == set()


def test_gradient_starts_from_its_feature_defaults():
    spec, features, solver = api.check_params("gradient", {"n_pcs": 10, "max_epochs": 5})
    assert features == {"n_pcs": 10, "scale": "mean", "normalize": "total"}
    assert solver == {"max_epochs": 5} and spec.options["n_pcs"].default is None


@pytest.mark.parametrize(("params", "words"), BAD)
def test_map_cells_refuses_bad_options_before_any_work(pair, monkeypatch, params, words):
    sp, ref = pair[0].copy(), pair[1]

    def no_work(*args, **kwargs):
        raise AssertionError("features were computed before the options were checked")

    monkeypatch.setattr(methods, "prepare_features", no_work)
    with pytest.raises(InvalidOptionError) as err:
        map_cells(ref, sp, **params)
    message = str(err.value)
    assert words in message and "\n" not in message
    if "bogus" in words:
        assert "its options are" in message and "epsilon" in message
    assert "mapping" not in sp.uns


@pytest.mark.parametrize(("params", "words"), BAD[:4])
def test_cli_bad_option_is_one_line_exit_2(pair, tmp_path, capsys, params, words):
    sp, ref = pair
    sc_path, sp_path, out = tmp_path / "sc.h5ad", tmp_path / "sp.h5ad", tmp_path / "o.h5ad"
    ref.write_h5ad(sc_path)
    clean = sp.copy()
    clean.uns.pop("sim", None)
    clean.write_h5ad(sp_path)
    args = ["map", str(sc_path), str(sp_path), "-o", str(out)]
    for key, value in params.items():
        args += ["--method", value] if key == "method" else ["--param", f"{key}={value}"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err
    assert not out.exists()


def test_cli_list_methods_comes_from_the_registry(capsys):
    assert main(["map", "--list-methods"]) == 0
    out = capsys.readouterr().out
    for name in (*SOLVERS, "depth", "knn", "spage"):
        assert name in out
    assert "epsilon=0.15" in out and "solver" in out and "baseline" in out


def test_auto_fractions_write_the_attention_keys(pair):
    sp, ref = pair[0].copy(), pair[1].copy()
    sp_obsm = set(sp.obsm)
    mapping = map_cells(ref, sp, key_added="m2", cell_type_key="cell_type", max_epochs=2)
    assert mapping.method == "attention"
    assert set(sp.obsm) - sp_obsm == {"m2_fractions", "m2_view_weights", "X_cellweave"}
    np.testing.assert_allclose(sp.obsm["m2_fractions"].sum(axis=1), 1.0, atol=1e-5)


def test_key_added_names_every_key_and_the_reference_is_not_written(pair):
    sp, ref = pair[0].copy(), pair[1].copy()
    ref_obs, ref_obsm, ref_uns = list(ref.obs.columns), set(ref.obsm), set(ref.uns)
    sp_uns, sp_obsm = set(sp.uns), set(sp.obsm)
    # gradient, the fractions default before attention (which also writes its latent and view
    # weights: test_auto_fractions_write_the_attention_keys)
    mapping = map_cells(
        ref, sp, method="gradient", key_added="m2", cell_type_key="cell_type", max_genes=50
    )
    assert isinstance(mapping, Mapping)
    assert set(sp.uns) - sp_uns == {"m2"} and set(sp.obsm) - sp_obsm == {"m2_fractions"}
    np.testing.assert_allclose(sp.obsm["m2_fractions"].sum(axis=1), 1.0, atol=1e-9)
    assert sp.uns["m2"]["params"]["features"]["max_genes"] == 50
    back = Mapping.from_adata(sp, key="m2")
    np.testing.assert_allclose(back.plan.toarray(), mapping.plan.toarray())
    assert list(ref.obs.columns) == ref_obs and set(ref.obsm) == ref_obsm
    assert set(ref.uns) == ref_uns


def test_copy_returns_the_changed_copy_and_leaves_the_input(pair):
    sp, ref = pair[0].copy(), pair[1]
    before = (set(sp.uns), set(sp.obsm))
    out = map_cells(ref, sp, method="softmax", perplexity=10, copy=True, cell_type_key="cell_type")
    assert isinstance(out, ad.AnnData) and out is not sp
    assert (set(sp.uns), set(sp.obsm)) == before
    assert out.uns["mapping"]["params"]["perplexity"] == 10
    assert "cell_type_fractions" in out.obsm
    assert Mapping.from_adata(out).method == "softmax"


def test_params_none_kept_as_the_string_none(pair):
    sp, ref = pair[0].copy(), pair[1]
    map_cells(ref, sp, method="softmax", n_candidates=None)
    assert sp.uns["mapping"]["params"]["n_candidates"] == "None"


def test_peers_are_registry_entries_with_options(pair, peers):
    def peer(adata_sc, adata_sp, genes, *, random_state=0, k=3):
        """a test peer"""
        return np.zeros((adata_sp.n_obs, len(genes)))

    register_method("mypeer", peer)
    entry = api.METHODS["mypeer"]
    assert entry.kind == "peer" and set(entry.options) == {"k"}
    assert entry.description == "a test peer"
    register_method("mypeer", peer)  # again: replaces it
    assert available_methods()["mypeer"].kind == "peer"
    sp, ref = pair
    with pytest.raises(InvalidOptionError, match="'bogus'"):
        evaluate.evaluate(
            ref, sp, methods=["mypeer"], folds=2, method_params={"mypeer": {"bogus": 1}}
        )
    with pytest.raises(InvalidOptionError, match="n_neighbors"):
        evaluate.evaluate(
            ref, sp, methods=["knn"], folds=2, method_params={"knn": {"n_neighbors": 0}}
        )
    with pytest.raises(InvalidOptionError, match="no option"):
        evaluate.evaluate(ref, sp, methods=["ot"], folds=2, method_params={"ot": {"perplexity": 5}})


def test_gradient_options_are_keywords_of_gradient_plan():
    """The gradient adapter forwards its options to ``gradient_plan`` (no second signature):
    every option it declares must be one of that function's keywords."""
    import inspect

    from cellweave.mapping.gradient import gradient_plan

    keywords = set(inspect.signature(gradient_plan).parameters)
    declared = set(api.METHODS["gradient"].options) - set(methods.FEATURE_OPTIONS)
    assert declared and declared <= keywords
