"""What the models choose and how they fit: the spatial strength searched over a log-spaced
range by the inner split (in range, recorded, reproducible), and the dropout-aware ZINB
likelihood (fills the simulator's dropout holes where the Poisson fit reproduces them)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import sparse

import cellweave as cw
from cellweave.errors import InvalidOptionError
from cellweave.impute import mf
from cellweave.impute.auto import auto_predict

FAST = {"max_epochs": 10, "n_latent": 16}


@pytest.fixture(scope="module")
def tissue():
    spatial, _ = cw.sim.simulate_spatial(
        n_spots=300, n_genes=80, dropout=0.0, library_size=300.0, random_state=3
    )
    return spatial


@pytest.fixture(scope="module")
def dropout_tissue():
    """The simulator with the CLI's dropout (0.3): the observed counts, the true proportions
    and the mask of the entries dropout zeroed (non-zero before it, zero after)."""
    spatial, _ = cw.sim.simulate_spatial(n_spots=400, n_genes=80, dropout=0.3, random_state=1)
    X = sparse.csr_matrix(spatial.X, dtype=np.float64)
    full = sparse.csr_matrix(spatial.layers["counts_full"]).toarray()
    truth = np.asarray(spatial.layers["true_expression"], dtype=np.float64)
    return {
        "X": X,
        "coords": np.asarray(spatial.obsm["spatial"], dtype=np.float64),
        "truth": truth / truth.sum(axis=1, keepdims=True),
        "dropped": (full > 0) & (X.toarray() == 0),
    }


def _log_error(P, truth, mask=None):
    diff = np.log1p(1e4 * P) - np.log1p(1e4 * truth)
    return float(np.sqrt(np.mean((diff if mask is None else diff[mask]) ** 2)))


# ----------------------------------------------------------------------------- range search


def test_spatial_grid_is_a_log_spaced_range_with_zero():
    grid = np.asarray(mf.SPATIAL_GRID)
    assert grid[0] == 0 and grid.max() >= 1.0 and grid[grid > 0].min() <= 0.01
    ratios = grid[2:] / grid[1:-1]
    np.testing.assert_allclose(ratios, ratios[0])  # log-spaced above 0


def test_spatial_path_is_warm_and_stops_once_worse(tissue):
    X = sparse.csr_matrix(tissue.X, dtype=np.float64)
    coords = np.asarray(tissue.obsm["spatial"])
    sel = mf.mf_select(X, coords=coords, random_state=0, alpha=0.1, **FAST)
    assert sel.chosen["spatial_weight"] in mf.SPATIAL_GRID
    weights = [c["spatial_weight"] for c, _ in sel.scores]
    scores = [s for _, s in sel.scores]
    assert weights == sorted(weights) and weights[0] == 0.0 and len(weights) >= 2
    # along the path every step improved on the one before, except possibly the last
    path = scores[1:]
    assert all(b < a for a, b in itertools.pairwise(path[:-1]))
    if len(path) < len(mf.SPATIAL_GRID) - 1:  # stopped early: because the last got worse
        assert path[-1] > path[-2]
    best = min(range(len(scores)), key=scores.__getitem__)
    assert sel.chosen["spatial_weight"] == weights[best]


def test_chosen_strength_recorded_in_uns_and_reproducible(tissue):
    a, b = tissue.copy(), tissue.copy()
    for adata in (a, b):
        cw.tl.impute(adata, method="mf", random_state=4, **FAST)
    chosen = a.uns["impute"]["params"]["chosen"]
    assert chosen["spatial_weight"] in mf.SPATIAL_GRID
    assert chosen["alpha"] in mf.ALPHA_GRID
    assert b.uns["impute"]["params"]["chosen"] == chosen
    np.testing.assert_array_equal(a.layers["imputed"], b.layers["imputed"])


def test_restricted_spatial_list_and_auto_records_its_choice(tissue):
    adata = tissue.copy()
    cw.tl.impute(adata, method="mf", random_state=0, spatial_weight=[0.1, 1.0], **FAST)
    assert adata.uns["impute"]["params"]["chosen"]["spatial_weight"] in (0.1, 1.0)
    cw.tl.impute(adata, method="auto", random_state=0, key_added="auto", **FAST)
    chosen = adata.uns["auto"]["params"]["chosen"]
    assert 0.0 <= chosen["blend"] <= 1.0
    if chosen["blend"] > 0:
        assert chosen["mf"]["spatial_weight"] in mf.SPATIAL_GRID
    cw.tl.impute(adata, method="rings", key_added="rings")
    assert "chosen" not in adata.uns["rings"]["params"]  # nothing chosen, nothing recorded


# ----------------------------------------------------------------------------- ZINB


@pytest.mark.parametrize("method", ["mf", pytest.param("ae", marks=pytest.mark.slow)])
def test_zinb_fills_dropout_holes_better_than_poisson(dropout_tissue, method):
    d = dropout_tissue
    kw = {"max_epochs": 15} if method == "mf" else {"max_epochs": 60}
    fn = cw.impute.METHODS[method].fn
    errors = {}
    for likelihood in ("poisson", "zinb"):
        P = fn(d["X"], coords=d["coords"], random_state=0, likelihood=likelihood, **kw)
        assert np.isfinite(P).all() and (P > 0).all()
        np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
        errors[likelihood] = (
            _log_error(P, d["truth"], d["dropped"]),
            _log_error(P, d["truth"]),
        )
    # on the dropped entries by a wide margin, and overall
    assert errors["zinb"][0] < 0.7 * errors["poisson"][0], errors
    assert errors["zinb"][1] < errors["poisson"][1], errors


def test_auto_with_zinb_is_mf_alone(dropout_tissue):
    d = dropout_tissue
    _, info = auto_predict(
        d["X"], coords=d["coords"], random_state=0, likelihood="zinb", return_info=True, **FAST
    )
    assert info["chosen"]["blend"] == 1.0 and "mixture" not in info["chosen"]


@pytest.mark.parametrize("method", ["mf", "ae", "auto"])
@pytest.mark.parametrize("value", ["zip", "ZINB", 3])
def test_bad_likelihood_is_an_invalid_option(tissue, method, value):
    with pytest.raises(InvalidOptionError, match="likelihood"):
        cw.tl.impute(tissue.copy(), method=method, likelihood=value)
