"""Technical dropout detected from the counts (``impute.zeros``): the excess-zeros statistic
separates the simulator with dropout from without and from real data, ``auto``'s default
likelihood follows it (ZINB where there is dropout, the unchanged Poisson default
elsewhere), and an explicit likelihood always wins."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse

import cellweave as cw
from cellweave.cli import main
from cellweave.errors import InvalidOptionError
from cellweave.impute import METHODS
from cellweave.impute.auto import auto_predict
from cellweave.impute.evaluate import gene_filter, molecular_split
from cellweave.impute.mf import mf_refit, mf_select
from cellweave.impute.models import zero_structure, zinb_nll
from cellweave.impute.zeros import ALPHA, choose_likelihood, excess_zeros, nb_zero_probability
from cellweave.nn import zinb_log_prob

#: Every non-model method: the references, the shrinkage and the baselines.
BASELINES = [*METHODS.names("reference"), *METHODS.names("baseline")]


def _sim(dropout: float, seed: int = 1, **options) -> dict:
    spatial, _ = cw.sim.simulate_spatial(
        n_spots=options.pop("n_spots", 400), n_genes=80, dropout=dropout, random_state=seed,
        **options,
    )  # fmt: skip
    X = sparse.csr_matrix(spatial.X, dtype=np.float64)
    truth = np.asarray(spatial.layers["true_expression"], dtype=np.float64)
    return {
        "adata": spatial,
        "X": X,
        "coords": np.asarray(spatial.obsm["spatial"], dtype=np.float64),
        "truth": truth / truth.sum(axis=1, keepdims=True),
    }


@pytest.fixture(scope="module")
def dropout_sim():
    return _sim(0.3)


@pytest.fixture(scope="module")
def clean_sim():
    return _sim(0.0, library_size=500.0)


def _log_error(P, truth) -> float:
    return float(np.sqrt(np.mean((np.log1p(1e4 * P) - np.log1p(1e4 * truth)) ** 2)))


# ----------------------------------------------------------------------------- statistic


def test_nb_zero_probability_limits():
    mu = np.array([[0.0, 1.0, 5.0]])
    np.testing.assert_allclose(nb_zero_probability(mu.copy(), np.full(3, 1e-9)), np.exp(-mu))
    np.testing.assert_allclose(nb_zero_probability(mu.copy(), np.ones(3)), 1.0 / (1.0 + mu))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistic_separates_dropout_from_none(seed):
    rates = {}
    for dropout in (0.0, 0.1, 0.3, 0.5):
        test = excess_zeros(_sim(dropout, seed=seed)["X"])
        rates[dropout] = test.excess_zeros
        assert test.dropout == (dropout > 0), (dropout, test)
    assert abs(rates[0.0]) < 0.01, rates
    assert rates[0.1] < rates[0.3] < rates[0.5], rates  # it grows with the dropout rate
    assert 0.6 * 0.3 < rates[0.3] < 0.3, rates  # and estimates it (a little below)


def test_statistic_sees_dropout_after_the_molecular_split(dropout_sim, clean_sim):
    """``auto`` gets X1 = Binomial(X, 1/2) in the protocol: thinning keeps the holes."""
    for sim, expected in ((dropout_sim, True), (clean_sim, False)):
        X1, _ = molecular_split(sim["X"], random_state=0)
        assert excess_zeros(X1).dropout is expected


REAL = [*(f"paste_breast_slice{i}.h5ad" for i in range(1, 5)), "merfish_hypothalamus_spatial.h5ad"]


@pytest.mark.parametrize("name", REAL)
def test_real_data_show_no_dropout(real_data, name):
    """UMI and MERFISH counts: no excess zeros where the NB rules them out, on all genes and
    on the protocol's X1 (genes non-zero in >= 10% of the spots)."""
    X = sparse.csr_matrix(cw.io.read_anndata(real_data(name)).X, dtype=np.float64)
    X1, _ = molecular_split(X[:, gene_filter(X, 0.1)], random_state=0)
    for counts in (X, X1):
        test = excess_zeros(counts)
        assert not test.dropout and test.excess_zeros < ALPHA / 2, test


def test_statistic_undecided_on_tiny_data():
    """Too few entries to test: no decision for dropout."""
    X = sparse.csr_matrix(np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]]))
    assert not excess_zeros(X).dropout


# ----------------------------------------------------------------------------- auto


def test_default_auto_beats_the_best_baseline_by_20_percent(dropout_sim):
    d = dropout_sim
    P, info = auto_predict(d["X"], coords=d["coords"], random_state=0, return_info=True)
    assert info["chosen"]["likelihood"] == "zinb" and info["chosen"]["excess_zeros"] > ALPHA
    baseline = {
        name: _log_error(METHODS[name].fn(d["X"], coords=d["coords"], random_state=0), d["truth"])
        for name in BASELINES
    }
    best = min(baseline.values())
    assert _log_error(P, d["truth"]) <= 0.8 * best, (_log_error(P, d["truth"]), baseline)


def test_no_dropout_keeps_the_poisson_default_exactly(clean_sim):
    d, fast = clean_sim, {"max_epochs": 5, "n_latent": 8}
    P, info = auto_predict(d["X"], coords=d["coords"], random_state=0, return_info=True, **fast)
    assert info["chosen"]["likelihood"] == "poisson" and info["chosen"]["posterior"] is True
    assert abs(info["chosen"]["excess_zeros"]) < 0.01
    before = auto_predict(d["X"], coords=d["coords"], random_state=0, likelihood="poisson", **fast)
    np.testing.assert_array_equal(P, before)  # bit for bit the Poisson default


@pytest.mark.parametrize("likelihood", ["poisson", "nb"])
def test_user_likelihood_overrides_the_test(dropout_sim, likelihood):
    params, recorded = choose_likelihood(dropout_sim["X"], {"likelihood": likelihood})
    assert params == {"likelihood": likelihood} and recorded == {}
    params, recorded = choose_likelihood(dropout_sim["X"], {"likelihood": "auto", "lr": 0.1})
    assert params == {"likelihood": "zinb", "lr": 0.1} and recorded["likelihood"] == "zinb"


def test_the_caller_s_smoother_is_the_test_s_mean(dropout_sim, monkeypatch):
    """auto passes the diffusion it blends in later: the test uses it, computes none."""
    from cellweave.impute import zeros
    from cellweave.impute.baselines.neighbours import diffusion

    X = dropout_sim["X"]
    expected = choose_likelihood(X, {})
    smooth = diffusion(X, random_state=0)
    monkeypatch.setattr(zeros, "diffusion", None)  # not called
    assert choose_likelihood(X, {}, smooth=smooth) == expected
    assert expected[1]["likelihood"] == "zinb"


def test_user_likelihood_overrides_in_tl_impute(dropout_sim, clean_sim):
    fast = {"max_epochs": 3, "n_latent": 8}
    adata = dropout_sim["adata"].copy()
    cw.tl.impute(adata, method="auto", likelihood="poisson", **fast)
    chosen = adata.uns["impute"]["params"]["chosen"]
    assert "likelihood" not in chosen and "excess_zeros" not in chosen
    assert chosen["posterior"] is True  # the Poisson blend, as asked
    adata = clean_sim["adata"].copy()
    cw.tl.impute(adata, method="auto", likelihood="zinb", **fast)
    assert adata.uns["impute"]["params"]["likelihood"] == "zinb"
    assert adata.uns["impute"]["params"]["chosen"]["blend"] == 1.0  # ZINB: MF alone


def test_cli_default_detects_dropout(dropout_sim, tmp_path, capsys):
    path, out = tmp_path / "sim.h5ad", tmp_path / "out.h5ad"
    dropout_sim["adata"].write_h5ad(path)
    code = main(["impute", str(path), "-o", str(out), "--param", "max_epochs=3"])
    assert code == 0, capsys.readouterr().err
    chosen = cw.io.read_anndata(out).uns["impute"]["params"]["chosen"]
    assert chosen["likelihood"] == "zinb" and chosen["excess_zeros"] > ALPHA


@pytest.mark.parametrize("value", ["zip", "ZINB", "Auto", 3, None])
def test_invalid_likelihood_is_an_invalid_option(clean_sim, value):
    with pytest.raises(InvalidOptionError, match="likelihood"):
        cw.tl.impute(clean_sim["adata"].copy(), method="auto", likelihood=value)


def test_auto_likelihood_is_only_auto_s(clean_sim):
    """``mf`` keeps its Poisson default: ``likelihood="auto"`` is ``auto``'s option."""
    assert METHODS["auto"].options["likelihood"].default == "auto"
    assert METHODS["mf"].options["likelihood"].default == "poisson"
    with pytest.raises(InvalidOptionError, match="likelihood"):
        cw.tl.impute(clean_sim["adata"].copy(), method="mf", likelihood="auto")


# ----------------------------------------------------------------------------- cost


def _zinb_inputs(seed: int = 0, shape=(30, 12)):
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(3.0 * torch.rand(shape, generator=g, dtype=torch.float64))
    x[torch.rand(shape, generator=g) < 0.3] = 0.0  # dropout
    x[0] = 0.0  # an empty spot
    log_mu = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
    log_theta = (torch.randn(shape[1], generator=g, dtype=torch.float64) + 1.0).requires_grad_()
    pi = torch.randn(shape[1], generator=g, dtype=torch.float64).requires_grad_()
    return x, log_mu, log_theta, pi


@pytest.mark.parametrize("seed", [0, 1])
def test_zinb_nll_is_the_nn_formula(seed):
    """The fused loss is ``-sum nn.zinb_log_prob`` (values and gradients), the same with a
    kept :func:`zero_structure` (in float64: in float32 both round differently)."""
    x, log_mu, log_theta, pi = _zinb_inputs(seed)
    old = -zinb_log_prob(x, torch.exp(log_mu), torch.exp(log_theta), pi.expand_as(x)).sum()
    old_grads = torch.autograd.grad(old, (log_mu, log_theta, pi))
    for structure in (None, zero_structure(x)):
        new = zinb_nll(x, log_mu, log_theta, pi, structure=structure)
        torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-10)
        new_grads = torch.autograd.grad(new, (log_mu, log_theta, pi))
        for a, b in zip(new_grads, old_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_dropout_path_searches_with_poisson_and_refits_zinb(dropout_sim):
    """With dropout, ``auto`` chooses MF's penalties by the Poisson search (the same choice
    as the Poisson ``auto``'s MF) and refits ZINB once, warm from it."""
    d, fast = dropout_sim, {"max_epochs": 5, "n_latent": 8}
    _, zinb = auto_predict(d["X"], coords=d["coords"], random_state=0, return_info=True, **fast)
    _, poisson = auto_predict(
        d["X"], coords=d["coords"], random_state=0, return_info=True, likelihood="poisson", **fast
    )
    assert zinb["chosen"]["likelihood"] == "zinb"
    assert zinb["mf"]["chosen"] == poisson["mf"]["chosen"]
    assert zinb["mf"]["inner_deviance"] == poisson["mf"]["inner_deviance"]


def test_refit_with_another_likelihood_starts_from_the_search(dropout_sim):
    """A ZINB refit warm-starts from the Poisson search's weights (its own parameters at
    their defaults); the weights of a fit with more parameters do not load silently."""
    X, off = dropout_sim["X"], {"spatial_weight": 0.0, "random_state": 0}
    sel = mf_select(X, alpha=[0.1, 0.3], n_latent=4, max_epochs=3, **off)
    assert "log_theta" not in sel.warm
    zinb = mf_refit(X, sel, random_state=0, likelihood="zinb")
    assert zinb.shape == X.shape and np.allclose(zinb.sum(1), 1.0)
    assert not np.allclose(zinb, mf_refit(X, sel, random_state=0))
    zinb_sel = mf_select(X, alpha=[0.1, 0.3], n_latent=4, max_epochs=3, likelihood="zinb", **off)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        mf_refit(X, zinb_sel, random_state=0, likelihood="poisson")
