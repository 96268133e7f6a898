"""``auto``'s last two steps: the expression-space smoother blended in by the inner split and
each spot's own counts on top (the Gamma-Poisson posterior mean)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from cellweave.errors import InputError
from cellweave.impute import auto
from cellweave.impute.posterior import (
    MIN_INVERSE_SHAPE,
    choose_posterior,
    extra_poisson_variance,
    neighbour_mean,
    posterior_mean,
)
from cellweave.impute.registry import METHODS
from cellweave.metrics.denoising import poisson_deviance

FAST = {"max_epochs": 5}


def _reference(X, P):
    """The module docstring's formula written out on dense arrays."""
    D = X.toarray()
    s = D.sum(axis=1, keepdims=True)
    mu = s * P
    inverse = np.maximum(((D - mu) ** 2 - D).sum(axis=0) / (mu**2).sum(axis=0), MIN_INVERSE_SHAPE)
    a = 1.0 / inverse
    Q = P * (D + a) / (s * P + a)
    return Q / Q.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def overdispersed():
    """Spots whose truth strays from the prior for the first 5 genes only (the prior has
    their mean over spots; the other genes are exact)."""
    rng = np.random.default_rng(0)
    n, g = 300, 40
    truth = np.tile(rng.dirichlet(np.ones(g)), (n, 1))
    truth[:, :5] *= rng.gamma(2.0, 0.5, size=(n, 5))  # extra-Poisson variation
    truth /= truth.sum(axis=1, keepdims=True)
    prior = truth.copy()  # the first 5 genes: their mean shares, the same total per spot
    shares = truth[:, :5].mean(axis=0)
    prior[:, :5] = np.outer(truth[:, :5].sum(axis=1), shares / shares.sum())
    X = sparse.csr_matrix(rng.poisson(2000 * truth).astype(np.float64))
    return X, prior, truth


@pytest.fixture(scope="module")
def sim(shallow_split_sim):
    return shallow_split_sim


def test_posterior_mean_is_the_gamma_poisson_formula(overdispersed):
    X, P, _ = overdispersed
    expected = _reference(X, P)
    np.testing.assert_allclose(posterior_mean(X, P), expected, rtol=1e-12)
    inplace = P.copy()
    assert posterior_mean(X, inplace, out=inplace) is inplace
    np.testing.assert_allclose(inplace, expected, rtol=1e-12)


def test_posterior_keeps_own_counts_only_where_the_model_misses(overdispersed):
    X, P, truth = overdispersed
    inverse = extra_poisson_variance(X, P)
    assert inverse[:5].min() > 100 * np.median(inverse[5:])  # the genes the prior misses
    Q = posterior_mean(X, P)
    error = lambda M: np.abs(np.log(M) - np.log(truth))  # noqa: E731
    # the missed genes move towards the truth, the others stay at the prior
    assert error(Q)[:, :5].mean() < 0.7 * error(P)[:, :5].mean()
    others = lambda M: M[:, 5:] / M[:, 5:].sum(axis=1, keepdims=True)  # noqa: E731
    assert np.abs(np.log(others(Q) / others(P))).mean() < 0.01


def test_auto_chooses_the_smoother_share_and_ends_with_the_posterior(sim):
    P, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], random_state=0, return_info=True, **FAST
    )
    assert np.isfinite(P).all() and (P > 0).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
    scores = info["smooth_scores"]
    assert sorted(scores) == sorted(auto.SMOOTH_GRID)
    assert info["smooth"] == min(scores, key=scores.get)
    assert info["chosen"]["smooth"] == info["smooth"] and info["chosen"]["posterior"] is True
    # the posterior step lowers the held-out deviance on the same fit
    off = auto.auto_predict(
        sim["X1"], coords=sim["coords"], random_state=0, posterior="off", **FAST
    )
    assert poisson_deviance(P, sim["X2"]) < poisson_deviance(off, sim["X2"])


def test_auto_fixed_blend_or_dropout_likelihood_skip_both_steps(sim):
    _, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], blend=1.0, random_state=0, return_info=True, **FAST
    )
    assert info["smooth"] == 0.0 and info["chosen"]["posterior"] is False
    _, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], likelihood="zinb", random_state=0, return_info=True,
        **FAST,
    )  # fmt: skip
    assert info["chosen"] == {**info["chosen"], "blend": 1.0, "smooth": 0.0, "posterior": False}
    _, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], blend=1.0, smooth=0.5, random_state=0,
        return_info=True, **FAST,
    )  # fmt: skip
    assert info["smooth"] == 0.5 and info["smooth_scores"] == {}


def test_auto_smooth_and_posterior_options_are_checked(sim):
    with pytest.raises(InputError, match="smooth="):
        auto.auto_predict(sim["X1"], coords=sim["coords"], smooth=1.5)
    with pytest.raises(InputError, match="posterior"):
        METHODS["auto"].check_options({"posterior": "maybe"})
    assert METHODS["auto"].check_options({"smooth": [0, 0.5], "posterior": "off"}) == {
        "smooth": [0.0, 0.5],
        "posterior": "off",
    }


# ----------------------------------------------------------------------------- knobs chosen
# on the inner split (issue 20): shrinkage share, floor of 1/a_j, neighbours as evidence


def test_posterior_floor_and_neighbour_evidence_are_the_formula(overdispersed):
    X, P, _ = overdispersed
    D = X.toarray()
    s = D.sum(axis=1, keepdims=True)
    mu = s * P
    inverse = np.maximum(((D - mu) ** 2 - D).sum(axis=0) / (mu**2).sum(axis=0), 0.1)
    E = np.roll(D, 1, axis=0) * 0.5  # any extra counts: shapes still from X alone
    a = 1.0 / inverse
    Q = P * (D + E + a) / ((s + E.sum(axis=1, keepdims=True)) * P + a)
    expected = Q / Q.sum(axis=1, keepdims=True)
    got = posterior_mean(X, P, floor=0.1, evidence=sparse.csr_matrix(E))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert extra_poisson_variance(X, P, floor=0.1).min() == pytest.approx(0.1)


def test_neighbour_mean_averages_the_nearest_spots():
    coords = np.c_[np.arange(5.0), np.zeros(5)]  # a line: neighbours are i - 1 and i + 1
    X = sparse.csr_matrix(np.arange(10.0).reshape(5, 2))
    N = neighbour_mean(X, coords, n_neighbors=1).toarray()
    assert N.shape == (5, 2) and (N.sum(axis=1) > 0).all()
    np.testing.assert_allclose(N[0], X.toarray()[1])  # spot 0's only neighbour is spot 1
    np.testing.assert_allclose(neighbour_mean(X[:1], coords[:1]).toarray(), 0.0)  # no others


def _smooth_field(n_side=24, g=30, seed=0):
    """Spots on a grid whose truth drifts smoothly in space; the prior is the pooled gene
    profile (it misses the pattern) or the truth itself."""
    rng = np.random.default_rng(seed)
    xy = np.stack(np.meshgrid(np.arange(n_side), np.arange(n_side)), -1).reshape(-1, 2) * 1.0
    base = rng.dirichlet(np.ones(g))
    wave = np.sin(xy[:, :1] / 4.0 + rng.uniform(0, 6, g)) + np.cos(xy[:, 1:] / 5.0)
    truth = base * np.exp(0.8 * wave)
    truth /= truth.sum(axis=1, keepdims=True)
    X = sparse.csr_matrix(rng.poisson(300 * truth).astype(np.float64))
    return X, xy, truth


def test_choose_posterior_adds_evidence_only_where_the_prior_misses():
    from cellweave.impute.baselines.reference import shrinkage
    from cellweave.impute.selection import inner_split

    X, xy, truth = _smooth_field()
    Xa, Xb = inner_split(X, random_state=0)
    shrunk = shrinkage(Xa, random_state=0)
    neighbours = neighbour_mean(Xa, xy)
    # prior = the truth: nothing to add, every knob stays at its weakest setting
    exact = choose_posterior(Xa, Xb, truth, shrunk, neighbours=neighbours)
    assert (exact.shrink, exact.floor, exact.neighbours) == (0.0, MIN_INVERSE_SHAPE, 0.0)
    # prior = the pooled profile (misses the spatial pattern): own and neighbour counts help
    flat = np.tile(np.asarray(Xa.sum(axis=0)).ravel() / Xa.sum(), (X.shape[0], 1))
    missed = choose_posterior(Xa, Xb, flat, shrunk, neighbours=neighbours)
    assert missed.neighbours > 0 and (missed.shrink > 0 or missed.floor > MIN_INVERSE_SHAPE)
    assert (
        missed.scores[missed.shrink, missed.floor, missed.neighbours]
        < missed.scores[0.0, MIN_INVERSE_SHAPE, 0.0]
    )
    # and the chosen step, applied to all counts, is closer to the truth than the plain one
    error = lambda M: np.abs(np.log(M) - np.log(truth)).mean()  # noqa: E731
    prior = (1 - missed.shrink) * flat + missed.shrink * shrinkage(X, random_state=0)
    chosen = posterior_mean(
        X, prior, floor=missed.floor, evidence=neighbour_mean(X, xy) * missed.neighbours
    )
    assert error(chosen) < 0.8 * error(posterior_mean(X, flat))
    # a subset of rows scores only those spots, without coordinates no neighbour weight
    rows = np.arange(0, X.shape[0], 3)
    sub = choose_posterior(Xa, Xb, flat[rows], shrunk[rows], rows=rows)
    assert sub.neighbours == 0.0 and all(key[2] == 0.0 for key in sub.scores)


def test_score_rows_keeps_every_spot_up_to_the_cap():
    from cellweave.impute.selection import MAX_SCORE_ROWS, score_rows

    np.testing.assert_array_equal(score_rows(50), np.arange(50))
    big = score_rows(MAX_SCORE_ROWS * 3, random_state=4)
    assert len(big) == MAX_SCORE_ROWS == len(np.unique(big)) and (np.diff(big) > 0).all()
    np.testing.assert_array_equal(big, score_rows(MAX_SCORE_ROWS * 3, random_state=4))


def test_auto_posterior_knobs_lower_the_heldout_deviance(sim, monkeypatch):
    """auto with the knobs chosen on the inner split against the plain posterior step (the
    grids collapsed to the weakest setting), same fit otherwise."""
    from cellweave.impute import posterior as post

    P, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], random_state=0, return_info=True, **FAST
    )
    chosen = info["chosen"]
    assert {"shrink", "floor", "neighbours"} <= set(chosen)
    assert (chosen["shrink"], chosen["floor"], chosen["neighbours"]) != (
        0.0,
        MIN_INVERSE_SHAPE,
        0.0,
    )
    scores = info["posterior_scores"]
    assert scores[chosen["shrink"], chosen["floor"], chosen["neighbours"]] == min(scores.values())
    for name in ("SHRINK_GRID", "FLOOR_GRID", "NEIGHBOUR_GRID"):
        monkeypatch.setattr(post, name, getattr(post, name)[:1])
    plain = auto.auto_predict(sim["X1"], coords=sim["coords"], random_state=0, **FAST)
    assert poisson_deviance(P, sim["X2"]) < poisson_deviance(plain, sim["X2"])


def test_choose_on_split_scores_the_inner_half_and_records_its_depth():
    from cellweave.impute.posterior import apply_posterior, choose_on_split
    from cellweave.impute.selection import inner_split

    X, xy, truth = _smooth_field(seed=1)
    split = inner_split(X, random_state=0)
    flat = np.tile(np.asarray(split[0].sum(axis=0)).ravel() / split[0].sum(), (X.shape[0], 1))
    choice = choose_on_split(split, flat, coords=xy, random_state=0)
    assert choice.depth_ratio == pytest.approx(split[0].sum() / X.sum())
    assert 0.45 < choice.depth_ratio < 0.55 and choice.neighbours > 0
    # a smoother share of 1 replaces the prior by the smoother's rows
    same = choose_on_split(split, np.full_like(flat, 0.5), smoother=(1.0, flat), coords=xy)
    assert same.scores == pytest.approx(choice.scores)
    # applied to all counts: the neighbours' molecules scaled by the depth ratio
    P = apply_posterior(X, flat.copy(), choice, coords=xy, random_state=0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    error = lambda M: np.abs(np.log(M) - np.log(truth)).mean()  # noqa: E731
    assert error(P) < 0.8 * error(flat)


def test_auto_computes_the_smoother_shrinkage_prior_and_knn_graph_once(sim, monkeypatch):
    """The zero test's smooth mean is the diffusion auto blends in (one diffusion of X1,
    one of the inner half), and the posterior step chooses the shrinkage baseline's prior
    strength and builds the spots' kNN graph once, on the inner half, for its choice and
    its application to all counts; the result is the one of computing them again."""
    from cellweave.impute import baselines, posterior, zeros

    calls: dict[str, int] = {}

    def counted(module, name):
        original = getattr(module, name)

        def call(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    for module, name in [(auto, "diffusion"), (zeros, "diffusion"), (posterior, "knn_graph"),
                         (baselines.reference, "shrinkage_prior"),
                         (posterior, "shrinkage_prior")]:  # fmt: skip
        counted(module, name)
    monkeypatch.setattr(posterior, "SHRINK_GRID", (0.3,))  # the shrinkage share is used
    monkeypatch.setattr(posterior, "NEIGHBOUR_GRID", (0.5,))  # and the neighbours
    _, info = auto.auto_predict(
        sim["X1"], coords=sim["coords"], random_state=0, return_info=True, smooth=0.2, **FAST
    )
    assert (info["chosen"]["shrink"], info["chosen"]["neighbours"]) == (0.3, 0.5)
    assert "likelihood" in info["chosen"]  # the zero test ran
    assert calls == {"diffusion": 2, "knn_graph": 1, "shrinkage_prior": 1}
    # what the step computed again on all counts would give: the same strength there
    X1 = sparse.csr_matrix(sim["X1"], dtype=np.float64)
    strength = baselines.reference.shrinkage_prior(X1, random_state=0)
    split = auto.inner_split(X1, random_state=0)
    assert strength == baselines.reference.shrinkage_prior(split[0], random_state=0)
    np.testing.assert_array_equal(
        posterior.neighbour_mean(X1, sim["coords"]).toarray(),
        posterior.neighbour_mean(
            X1, operator=posterior.neighbour_operator(sim["coords"])
        ).toarray(),
    )
