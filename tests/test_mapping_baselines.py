"""Baseline gene predictors of the mapping evaluation (depth, kNN average, SpaGE)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import cellweave as cw
from cellweave.errors import InputError, MissingKeyError
from cellweave.mapping.baselines import (
    _spage_weights,
    depth,
    knn,
    principal_vectors,
    spage,
)
from cellweave.mapping.evaluate import evaluate


def _adata(X, genes):
    a = ad.AnnData(X)
    a.var_names = list(genes)
    a.obs_names = [f"o{i}" for i in range(a.n_obs)]
    return a


@pytest.fixture(scope="module")
def sim():
    spatial, reference = cw.sim.simulate_spatial(
        n_spots=300, n_genes=60, n_ref_cells=400, random_state=1
    )
    return reference, spatial


def gene_mean(adata_sc, adata_sp, genes, *, random_state=0):
    """The reference gene mean at every spot."""
    m = np.asarray(adata_sc[:, list(genes)].X.mean(axis=0)).ravel()
    return np.tile(m, (adata_sp.n_obs, 1))


@pytest.fixture(scope="module")
def sim_result(sim):
    reference, spatial = sim
    return evaluate(
        reference, spatial, methods={"gene_mean": gene_mean, "knn": knn, "spage": spage}
    )


@pytest.mark.parametrize("scheme", ["normalized", "raw"])
@pytest.mark.parametrize("method", ["knn", "spage"])
def test_baselines_beat_the_gene_mean_on_the_simulator(sim_result, scheme, method):
    table = sim_result.tables[scheme]
    assert table.loc["gene_mean", "pcc"] == 0.0  # a flat prediction recovers no pattern
    assert table.loc[method, "pcc"] > 0.1
    assert table.loc[method, "ssim"] > table.loc["gene_mean", "ssim"]
    # (not AS: a flat prediction wins RMSE of z-scores, 1.0, and is close on JS)


def test_depth_by_hand():
    sc = _adata(np.array([[1.0, 3.0, 2.0], [3.0, 1.0, 0.0]]), ["a", "b", "c"])
    sp = _adata(sparse.csr_matrix(np.array([[2.0, 2.0], [6.0, 2.0]])), ["a", "b"])
    # reference total over the spatial genes a, b = 8; gene c total 2 -> share 0.25
    np.testing.assert_allclose(depth(sc, sp, ["c"]), [[1.0], [2.0]])


def test_knn_finds_the_matching_cell():
    rng = np.random.default_rng(0)
    sc_X = rng.poisson(4, (20, 6)).astype(float) + 1
    sc = _adata(sc_X, [f"g{i}" for i in range(6)])
    order = rng.permutation(20)
    sp = _adata(sc_X[order, :4] * 5, [f"g{i}" for i in range(4)])  # the same cells, deeper
    pred = knn(sc, sp, ["g4", "g5"], n_neighbors=1)
    expected = sc_X[order][:, 4:] / sc_X[order, :4].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pred, expected)


def test_principal_vectors_are_orthonormal_and_ordered():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))
    B = rng.normal(size=(150, 12)) @ rng.normal(size=(12, 12))
    source, target, cosine = principal_vectors(A - A.mean(0), B - B.mean(0), 5)
    for pv in (source, target):
        assert pv.shape == (5, 12)
        np.testing.assert_allclose(pv @ pv.T, np.eye(5), atol=1e-10)
    d = np.diag(cosine)
    assert np.all(np.diff(d) <= 1e-12) and np.all((d >= 0) & (d <= 1 + 1e-12))
    np.testing.assert_allclose(cosine, np.diag(d), atol=1e-10)  # pairs align one-to-one
    # one data set against itself: every pair is identical
    s, t, c = principal_vectors(A - A.mean(0), A - A.mean(0), 4)
    np.testing.assert_allclose(np.diag(c), 1.0)
    np.testing.assert_allclose(np.abs(s @ t.T), np.eye(4), atol=1e-8)


def test_spage_weights_by_hand():
    d = np.array(
        [
            [0.2, 0.3, 0.5, 1.2],  # three close: (1 - d / 1.0) / 2
            [0.4, 1.0, 1.1, 1.3],  # one close: weight 1
            [0.0, 0.0, 1.5, 1.5],  # tied at 0: shared equally
            [1.0, 1.2, 1.3, 1.4],  # none close: no weight
        ]
    )
    w = _spage_weights(d)
    np.testing.assert_allclose(
        w,
        [[0.4, 0.35, 0.25, 0], [1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0, 0]],
    )


def test_spage_recovers_genes_on_one_platform(sim):
    """Spatial cells that are reference cells: SpaGE's prediction tracks the truth."""
    reference, _ = sim
    genes = list(reference.var_names)
    sp = reference[:150, genes[10:]].copy()
    pred = spage(reference[150:], sp, genes[:10], random_state=0)
    X = reference[:150, genes[:10]].X
    X = np.log1p(1e6 * X.toarray() / reference[:150].X.sum(axis=1).A)
    r = [np.corrcoef(pred[:, j], X[:, j])[0, 1] for j in range(10)]
    assert np.median(r) > 0.3


def test_errors(sim):
    reference, spatial = sim
    with pytest.raises(MissingKeyError, match="not in adata_sc"):
        knn(reference, spatial[:, 5:], ["not_a_gene"])
    with pytest.raises(InputError, match="n_neighbors"):
        knn(reference, spatial[:, 5:], list(spatial.var_names[:5]), n_neighbors=0)
    with pytest.raises(InputError, match="n_neighbors"):
        spage(reference, spatial[:, 5:], list(spatial.var_names[:5]), n_neighbors=2.5)
