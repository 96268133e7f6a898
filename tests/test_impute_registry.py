"""The imputation registry: declared options, one check before any work, result keys."""

from __future__ import annotations

import inspect

import pytest

import cellweave as cw
from cellweave.cli import main
from cellweave.errors import InvalidOptionError
from cellweave.impute import api, auto, autoencoder, mf, mixture
from cellweave.impute.registry import FIXED, METHODS
from cellweave.registry import undeclared_keywords
from cellweave.sim import simulate_spatial

#: Runners that forward ``**params``: the functions whose keywords they accept.
FORWARDED = {
    "mf": [mf.mf_select],
    "mf_nospatial": [mf.mf_select],
    "ae": [autoencoder.ae_predict],
    "ae_nospatial": [autoencoder.ae_predict],
    "mixture": [mixture.mixture_select],
    "auto": [auto.auto_predict, mf.mf_select, mixture.mixture_select],
}
#: Internal keywords of those functions (set by the runners, not user options).
INTERNAL = {"method", "score_single", "split", "return_info", "max_iter"}

BAD = [
    ({"bogus": 1}, "unknown option 'bogus'"),
    ({"n_latent": "abc"}, "n_latent='abc'"),
    ({"spatial_weight": -1}, "spatial_weight=-1"),
    ({"max_epochs": -3}, "max_epochs=-3"),
    ({"blend": 1.5}, "blend=1.5"),
    ({"target_sum": -1}, "target_sum=-1"),
]


@pytest.fixture(scope="module")
def tissue():
    adata, _ = simulate_spatial(n_spots=80, n_genes=60, random_state=0)
    return adata


def _keywords(fn) -> set[str]:
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_runner_keyword_is_declared(name):
    method = METHODS[name]
    assert undeclared_keywords(method.runner, method, FIXED) == set()
    if name not in FORWARDED:  # explicit keywords: each declared option is one of them
        assert set(method.options) <= _keywords(method.runner) - set(FIXED)
        return
    accepted = set().union(*(_keywords(fn) for fn in FORWARDED[name])) - {"X1", *FIXED}
    declared = set(method.options)
    assert declared <= accepted, declared - accepted
    missing = accepted - declared - INTERNAL
    if name.endswith("_nospatial"):
        missing -= {"spatial_weight"}
    assert missing == set(), missing


def test_options_have_types_and_ranges():
    assert METHODS["knn"].options["n_neighbors"].low == 1
    assert METHODS["mf"].options["spatial_weight"].low == 0
    assert METHODS["auto"].check_options({"spatial_weight": 0.01, "rank": 4, "blend": [0, 1]}) == {
        "spatial_weight": 0.01,
        "rank": 4,
        "blend": [0.0, 1.0],
    }


@pytest.mark.parametrize(("params", "words"), BAD)
def test_impute_refuses_bad_options_before_any_work(tissue, monkeypatch, params, words):
    adata = tissue.copy()

    def no_work(*args, **kwargs):
        raise AssertionError("the data was read before the options were checked")

    monkeypatch.setattr(api, "check_adata", no_work)
    with pytest.raises(InvalidOptionError) as err:
        cw.tl.impute(adata, method="auto", **params)
    message = str(err.value)
    assert words in message and "\n" not in message
    if "unknown" in words:
        assert "valid options: alpha" in message and "spatial_weight" in message
    assert "imputed" not in adata.layers and "impute" not in adata.uns


def test_evaluate_checks_method_params_up_front(tissue):
    with pytest.raises(InvalidOptionError, match="n_neighbors=0"):
        cw.impute.evaluate(
            tissue, methods="knn", seeds=(0,), method_params={"knn": {"n_neighbors": 0}}
        )


@pytest.mark.parametrize(("params", "words"), BAD)
def test_cli_bad_option_is_one_line_exit_2(tissue, tmp_path, capsys, params, words):
    path = tmp_path / "in.h5ad"
    tissue.write_h5ad(path)
    out = tmp_path / "out.h5ad"
    ((key, value),) = params.items()
    code = main(["impute", str(path), "-o", str(out), "--param", f"{key}={value}"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err
    assert not out.exists()


def test_cli_list_methods_comes_from_the_registry(capsys):
    assert main(["impute", "--list-methods"]) == 0
    out = capsys.readouterr().out
    for name in METHODS:
        assert name in out
    assert "n_neighbors=15" in out and "reference" in out and "model" in out


def test_key_added_names_every_key(tissue):
    adata = tissue.copy()
    before_layers, before_uns = set(adata.layers), set(adata.uns)
    cw.tl.impute(adata, method="gene_mean", key_added="denoised")
    assert set(adata.layers) - before_layers == {"denoised"}
    assert set(adata.uns) - before_uns == {"denoised"}
    params = adata.uns["denoised"]["params"]
    assert params["key_added"] == "denoised" and params["method"] == "gene_mean"
    cw.tl.impute(adata, method="gene_mean")  # the defaults as before
    assert "imputed" in adata.layers and adata.uns["impute"]["params"]["key_added"] == "imputed"


def test_copy_returns_a_changed_copy_and_leaves_the_input(tissue):
    adata = tissue.copy()
    out = cw.tl.impute(adata, method="knn", n_neighbors=5, copy=True, key_added="k")
    assert out is not adata and "k" in out.layers and out.uns["k"]["params"]["n_neighbors"] == 5
    assert "k" not in adata.layers and "k" not in adata.uns


def test_params_are_json_safe(tissue):
    adata = tissue.copy()
    cw.tl.impute(adata, method="shrinkage", prior=None, random_state=2)
    params = adata.uns["impute"]["params"]
    assert params["prior"] is None and params["random_state"] == 2
