"""Neural imputation models: valid proportions, determinism, robustness, and that they beat
the references on simulated data (scored against held-out molecules and the truth)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from scipy import sparse

from cellweave.errors import MissingKeyError
from cellweave.impute import autoencoder, mf, selection
from cellweave.impute.registry import METHODS
from cellweave.impute.spatial_loss import SpatialGraph, SpatialLoss, spatial_graph, spatial_penalty
from cellweave.metrics.denoising import poisson_deviance

FAST = {"max_epochs": 10}


@pytest.fixture(scope="module")
def sim(split_sim):
    return split_sim(
        n_spots=300,
        n_genes=60,
        n_cell_types=4,
        n_domains=3,
        library_size=300.0,
        n_ref_cells=10,
        random_state=0,
    )


def _check_P(P, shape):
    assert P.shape == shape and P.dtype == np.float64
    assert np.all(np.isfinite(P)) and np.all(P > 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)


def _truth_error(P, truth):
    return float(np.sqrt(np.mean((np.log1p(1e4 * P) - np.log1p(1e4 * truth)) ** 2)))


def _gene_mean(X1):
    g = np.asarray(X1.sum(axis=0)).ravel() + 0.5
    return np.tile(g / g.sum(), (X1.shape[0], 1))


def test_methods_registered_as_models():
    for name in ("mf", "mf_nospatial", "ae", "ae_nospatial", "auto"):
        assert METHODS[name].kind == "model"
    assert METHODS["mf"].spatial and not METHODS["mf_nospatial"].spatial


@pytest.mark.parametrize("name", ["mf", "ae"])
def test_valid_and_deterministic(sim, name):
    fn = METHODS[name].fn
    kw = dict(FAST, spatial_weight=0.01)
    if name == "mf":
        kw["alpha"] = 0.05
    P1 = fn(sim["X1"], coords=sim["coords"], random_state=3, **kw)
    P2 = fn(sim["X1"], coords=sim["coords"], random_state=3, **kw)
    _check_P(P1, sim["X1"].shape)
    np.testing.assert_array_equal(P1, P2)


def test_mf_beats_references_on_held_out_molecules(sim):
    P = mf.mf_predict(sim["X1"], coords=sim["coords"], random_state=0, max_epochs=20)
    raw = sim["X1"].toarray() + 1e-3
    raw /= raw.sum(axis=1, keepdims=True)
    dev = poisson_deviance(P, sim["X2"])
    assert dev < poisson_deviance(_gene_mean(sim["X1"]), sim["X2"])
    assert dev < poisson_deviance(raw, sim["X2"])


def test_spatial_loss_reduces_error_to_truth(sim):
    kw = dict(alpha=0.05, max_epochs=20, n_latent=16)
    off = mf.mf_predict(sim["X1"], coords=sim["coords"], spatial_weight=0.0, **kw)
    on = mf.mf_predict(sim["X1"], coords=sim["coords"], spatial_weight=0.3, **kw)
    assert _truth_error(on, sim["truth"]) < _truth_error(off, sim["truth"])


def test_selection_only_receives_training_counts(sim):
    params = inspect.signature(selection.select_by_inner_split).parameters
    assert list(params)[:3] == ["X1", "candidates", "fit_candidate"]
    seen = []

    def fit_candidate(Xa, Xb, params, warm):
        seen.append((Xa.copy(), Xb.copy()))
        return _gene_mean(Xa) if params["k"] == 0 else _gene_mean(Xa + Xb), warm

    result = selection.select_by_inner_split(
        sim["X1"], [{"k": 0}, {"k": 1}], fit_candidate, random_state=0
    )
    Xa, Xb = seen[0]
    # the inner halves partition X1's molecules: X2 is never involved
    assert abs(Xa + Xb - sim["X1"]).sum() == 0
    assert Xa.sum() == pytest.approx(0.5 * sim["X1"].sum(), rel=0.05)
    assert [s[0] for s in result.scores] == [{"k": 0}, {"k": 1}]
    assert result.best in ({"k": 0}, {"k": 1})
    assert result.scale == pytest.approx(Xa.sum() / Xa.shape[0])


def test_zero_count_spots_and_unobserved_genes(sim):
    X1 = sim["X1"].tolil()
    X1[:5, :] = 0
    X1[:, :3] = 0
    X1 = X1.tocsr()
    for name in ("mf", "ae"):
        P = METHODS[name].fn(X1, coords=sim["coords"], random_state=0, **FAST)
        _check_P(P, X1.shape)
        assert np.all(P[:, :3] < 1e-3)  # never observed: tiny but positive


def test_single_spot():
    X1 = sparse.csr_matrix(np.array([[3.0, 0.0, 1.0, 5.0]]))
    for name in ("mf", "ae", "auto"):
        P = METHODS[name].fn(X1, coords=np.zeros((1, 2)), random_state=0, **FAST)
        _check_P(P, X1.shape)


@pytest.mark.parametrize("name", ["mf", "ae"])
def test_no_coordinates(sim, name):
    with pytest.raises(MissingKeyError, match="spatial_weight=0"):
        METHODS[name].fn(sim["X1"], coords=None, random_state=0, **FAST)
    P = METHODS[name].fn(sim["X1"], coords=None, random_state=0, spatial_weight=0, **FAST)
    _check_P(P, sim["X1"].shape)
    P = METHODS[f"{name}_nospatial"].fn(sim["X1"], coords=None, random_state=0, **FAST)
    _check_P(P, sim["X1"].shape)


def test_auto_runs_without_coordinates(sim):
    P = METHODS["auto"].fn(sim["X1"][:50], coords=None, random_state=0, max_epochs=3)
    _check_P(P, (50, sim["X1"].shape[1]))


def test_nb_and_mse_likelihoods_and_minibatches(sim):
    for kw in ({"likelihood": "nb"}, {"likelihood": "mse"}, {"batch_size": 64}):
        P = mf.mf_predict(
            sim["X1"], coords=sim["coords"], alpha=0.05, spatial_weight=0.01, max_epochs=3, **kw
        )
        _check_P(P, sim["X1"].shape)
    P = autoencoder.ae_predict(sim["X1"], coords=sim["coords"], batch_size=64, max_epochs=3)
    _check_P(P, sim["X1"].shape)


# ----------------------------------------------------------------------------- spatial loss


def test_spatial_graph_ring_weights_row_normalised():
    xx, yy = np.meshgrid(np.arange(5.0), np.arange(5.0))
    coords = np.c_[xx.ravel(), yy.ravel()]
    g = spatial_graph(coords, weights=(1.0, 0.5), normalize=None)
    W = g.to_csr()
    centre = 12  # (2, 2): 4 order-1 neighbours (weight 1) and 8 order-2 (weight 0.5)
    assert sorted(W[centre].data.tolist()) == [0.5] * 8 + [1.0] * 4
    gn = spatial_graph(coords, weights=(1.0, 0.5))
    np.testing.assert_allclose(np.asarray(gn.to_csr().sum(axis=1)).ravel(), 1.0, rtol=1e-6)


def test_spatial_penalty_gene_space_equals_sum_over_genes():
    torch.manual_seed(0)
    U, V = torch.randn(4, 3), torch.randn(6, 3)
    graph = SpatialGraph(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([1.0, 0.5, 2.0]), 4)
    loss = SpatialLoss(graph)
    src, dst, w = loss.edges()
    Vc = V - V.mean(0)
    fast = spatial_penalty(U[src], U[dst], w, gram=Vc.T @ Vc)
    clr = U @ V.T
    clr = clr - clr.mean(1, keepdim=True)  # centred log proportions over genes
    slow = sum(
        float(wi) * float(((clr[i] - clr[j]) ** 2).sum())
        for i, j, wi in zip(graph.src, graph.dst, graph.weight, strict=True)
    )
    assert float(fast) == pytest.approx(slow, rel=1e-5)
    # minibatch: only the edges leaving the batch
    s, d, _ = loss.edges(torch.tensor([1, 3]))
    assert s.tolist() == [1] and d.tolist() == [2]


def test_similarity_gating_downweights_boundary_edges():
    coords = np.c_[np.arange(10.0), np.zeros(10)]
    X = np.zeros((10, 4))
    X[:5, 0] = 50
    X[5:, 1] = 50
    X[:, 2] = 5
    g = spatial_graph(
        coords,
        weights=(1.0,),
        n_neighbors=2,
        normalize=None,
        similarity="gaussian",
        X=sparse.csr_matrix(X),
    )
    W = g.to_csr()
    assert W[4, 5] < 0.1 * W[3, 4]
